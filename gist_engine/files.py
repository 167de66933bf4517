"""The file names of a run's folder (checkpoint, training state, result): one place for the trainer and the readers.

Imports nothing: the store's readers, the gallery and the app name a run's files without importing torch.
"""

CHECKPOINT_NAME = "checkpoint.safetensors"  # the trained parameters (`train.checkpoint.save_checkpoint`)
RESUME_NAME = "resume.safetensors"  # the training state a run continues from (`train.save_training_state`)
RESULT_NAME = "result.json"  # a run's final numbers (`runs.execute.write_result`)

__all__ = ["CHECKPOINT_NAME", "RESULT_NAME", "RESUME_NAME"]
