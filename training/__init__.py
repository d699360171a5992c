"""invnet.training: multi-agent RL (IPPO via stable-baselines3, MAPPO in torch) tracked in MLflow.

Modules: ``config`` (TrainConfig), ``actions`` (action modes incl. residual), ``vecenv`` (SB3 VecEnv
adapter), ``networks``, ``normalize``, ``ippo``, ``mappo``, ``session`` (evaluation, best bundle, logging),
``checkpoint``, ``bundle`` (policy bundles, pyfunc I/O), ``pyfunc``, ``tracking`` (MLflow), ``progress``,
``api`` (``train``), ``commands`` (``invnet train``). Heavy imports happen inside these modules only.
"""
