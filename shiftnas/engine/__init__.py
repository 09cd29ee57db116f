"""The engine, one sub-package per job (each imports only the ones listed before it):

* ``evaluation``: a subnet's accuracy through the supernet, its cost metrics and latency, the objectives;
* ``training``: the optimisation policy, supernet training, landmarks, stand-alone training, fine-tuning;
* ``search``: the searcher contract and operators, NSGA-II, NAT / NATv2, the archive, supernet shifting;
* ``groundtruth``: the stand-alone ground-truth table, ranking a supernet against it, its reliability.

``checkpoint`` (supernet files) and ``tensors`` (batching, resizing) are shared by all four.
"""
