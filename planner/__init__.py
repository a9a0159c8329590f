"""Planning: optimizers, costs, guardrails, the MPC agent and the apps."""
