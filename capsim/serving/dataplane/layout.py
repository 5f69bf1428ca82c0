"""The compiled data plane's layout: what `advance` returns, which slot of the plane's scalar arrays
holds what (I_* in `ints`, F_* in `floats`, C_* in `cfg_i` / `cfg_f`), and the codes the kernel uses
for balancers, slot states, events and outcomes. Plain integers: numba reads them as constants."""

from __future__ import annotations

# -- what `advance` returns ----------------------------------------------------------------------
RAN_TO_STOP = 0  # every event before stop_s is handled; F_NEXT holds the next event's time
NEED_ARRIVALS = 1  # the arrival chunk is used up: give the next (or set I_ARRIVALS_DONE)
NEED_DRAWS = 2  # a draw buffer runs low (Python refills every low one: each has its own stream)
NEED_ROOM = 3  # a queue or the event heap is nearly full: grow them
DRAINED = 4  # draining replicas finished: I_DRAINED_N entries in drained_slot / drained_s
NO_READY = 5  # the arrival (id in I_AUX, time in F_AUX) found no ready replica: the activator takes it

# -- ints: scalar state ----------------------------------------------------------------------------
I_N_READY = 0  # replicas in the balancer (their slots are ready[:n])
I_LB_NEXT = 1  # round robin's next index / least-outstanding's rotating start
I_LB_POS = 2  # next unused draw of the balancer's buffer
I_PENDING = 3  # requests routed past the cache and not finished (activator included)
I_ARRIVED = 4  # requests routed past the cache, cumulative
I_HEAP_N = 5
I_SEQ = 6  # events pushed so far: ties in time go in push order, as SimPy's event ids do
I_ARR_POS = 7  # next arrival of the chunk
I_ARR_N = 8  # arrivals in the chunk
I_ARRIVALS_DONE = 9  # 1 once the arrival stream is exhausted
I_AUX = 10
I_BASE = 11  # request id of the log's row 0
I_DRAINED_N = 12
I_LOW_DRAWS = 13  # set when a draw buffer ran low (Python refills every low one)
I_LOW_ROOM = 14  # set when a queue is nearly full
I_LB_END = 15  # draws in the balancer's buffer
I_IN_LOOP = 16  # 1 while handling a run of arrivals (arrival lookahead), 0 between them
I_DUE = 17  # 1 when that run began with its arrival timer firing: its first arrival goes regardless
I_TIMER_ON = 18  # 1 while the next arrival's timer is pending (kept beside the heap: one at most)
I_TIMER_SEQ = 19  # its place in the order of scheduling
N_INTS = 20

# -- floats: scalar state --------------------------------------------------------------------------
F_CONC_V = 0  # concurrency (outstanding requests) now, its last change and its integral since 0
F_CONC_LAST = 1
F_CONC_AREA = 2
F_BUSY_V = 3  # busy executors, likewise
F_BUSY_LAST = 4
F_BUSY_AREA = 5
F_AUX = 6
F_NEXT = 7  # time of the next data-plane event (inf: none)
F_CLOCK = 8  # what SimPy's clock would read: the time of the event being handled
F_TIMER = 9  # when the next arrival's timer fires
N_FLOATS = 10

# -- cfg_i / cfg_f: settings -----------------------------------------------------------------------
C_INSTANCES = 0
C_MAX_BATCH = 1
C_CAPACITY = 2  # -1: unbounded
C_BALANCER = 3  # the balancer's place in the registry (kernel.BALANCER_CODES)
C_FORM = 4  # service-time form (capsim.servicetime.base.BatchTimeTable.FORM_*)
C_DRAWS = 5  # 1 when the service time takes one draw per batch
C_HAS_TIMEOUT = 6
C_LB_DRAWS = 7  # random draws one pick of the balancer may take (balancers.Balancer.draws_per_pick)
C_FRONTEND = 8  # front-end workers per replica (0: no front end)
C_FE_DRAWS = 9  # 1 when front-end times are drawn (lognormal), 0 when fixed
C_WINDOW_LATE = 10  # 1 when the batching timer fires late (serving.frontend.window_late_quantiles_ms)
C_SIZED = 11  # 1 when requests have sizes (workload.size): batches sum or pad their sizes
C_SIZE_RULE = 12  # capsim.servicetime.base.SIZE_RULES: 0 total, 1 max (padded)
C_PER_GPU = 13  # replicas sharing one GPU by time-slicing or MPS (slots s // C_PER_GPU); 0: not shared
N_CFG_I = 14
C_MAX_WAIT_S = 0
C_TIMEOUT_S = 1
C_OVERHEAD_S = 2
C_LOC = 3
C_SIGMA = 4
C_FE_FIXED_S = 5  # the front-end time when it is fixed
C_SIZE_S = 6  # the service time's size term: seconds per size unit (BatchTimeTable.size_s)
C_ALPHA = 7  # slowdown per busy co-runner on a shared GPU (rules.interference_factor)
N_CFG_F = 8


# -- slot states -----------------------------------------------------------------------------------
FREE = 0
READY = 1
DRAINING = 2
DRAINED_SLOT = 3  # drained and reported; freed by Python

EV_DONE = 0
EV_TIMER = 1
EV_FRONT = 2  # a request leaves its replica's front end (capsim.serving.frontend.FrontEnd)

# Request outcomes, as in capsim.metrics.request_log.
COMPLETED = 1
REJECTED = 2
TIMED_OUT = 3

# A batching deadline a rounding error away counts as reached.
CLOCK_SLACK_S = 1e-12
