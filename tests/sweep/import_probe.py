"""Imported by the fake task's module when a worker unpickles the task: records the GPUs this
process could see at that moment (the joblib GPU assignment must come before any task import)."""
import os

CUDA_VISIBLE_DEVICES_AT_IMPORT = os.environ.get("CUDA_VISIBLE_DEVICES")
