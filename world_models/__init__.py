"""World models: the protocol, the MuJoCo oracle and the JEPA."""
