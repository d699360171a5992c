"""invnet.serving: the policy server (``invnet serve``).

``app.create_app(settings)`` builds the FastAPI app; ``service`` holds the HTTP-free logic (request
state -> core State, policy call, feasibility through the simulator core); ``settings`` reads
options and ``INVNET_*`` variables. Nothing heavy is imported here, so ``invnet --help`` stays fast.
"""
