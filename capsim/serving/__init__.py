"""How models are served: real-time replicas with dynamic batching behind a load balancer."""
