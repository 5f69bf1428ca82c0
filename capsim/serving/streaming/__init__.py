"""`serving.mode: streaming`: a Kafka topic consumed by a consumer group that scores every event.

Only the schema is imported here (`capsim.scenario.schema` composes it); the simulation is in
`capsim.serving.streaming.run`.
"""

from capsim.serving.streaming.spec import KafkaLagScaling, Rebalance, StreamingServing

__all__ = ["KafkaLagScaling", "Rebalance", "StreamingServing"]
