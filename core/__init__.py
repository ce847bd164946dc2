"""DetLens core: models, weights, images, timed inference, records, run store, evaluation, CLI. No Streamlit here."""

import os

# torch's CPU thread pool (OpenMP) spin-waits between parallel regions by default. On a machine shared with the
# dashboard, a job worker or other processes, 2 spinning threads on 2 busy cores made an SSDLite320 call 15-40x slower
# (2.2-5.7 s instead of 0.16 s, measured here); waiting passively removes that. It must be set before torch loads its
# OpenMP runtime, so it is set when `core` is first imported; an OMP_WAIT_POLICY already in the environment wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
