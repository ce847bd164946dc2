"""`python -m core.evalcore`: the evaluation worker (one pickled ArrayJob on stdin, its ArrayEval on stdout)."""

from core.evalcore.job import worker_main

worker_main()
