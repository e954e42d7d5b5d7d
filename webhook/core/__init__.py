"""Policy as data and the pure engine: the catalog of controls, the operator's policy, workload shapes, and
the evaluation that turns an object and a policy into findings. No I/O here."""
