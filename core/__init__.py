"""DetLens core: models, weights, images, timed inference, records, run store, evaluation, CLI. No Streamlit here.

Importing it changes nothing in the process: no environment variable, no thread count. A timed model call must cost
what it costs in a user's own loop (an OMP_WAIT_POLICY=PASSIVE set here once doubled every recorded CPU latency).
The worker the dashboard starts shares the machine by its thread count (one core left to the server) and niceness.
"""
