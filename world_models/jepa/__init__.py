"""JEPA world model: CoordConv encoder, AdaLN action-conditioned latent predictor, probes, training and data."""

from world_models.jepa.checkpoint import CheckpointError, from_checkpoint, load_world_model, save_checkpoint
from world_models.jepa.model import JEPAConfig, JEPAWorldModel

__all__ = ["CheckpointError", "JEPAConfig", "JEPAWorldModel", "from_checkpoint", "load_world_model", "save_checkpoint"]
