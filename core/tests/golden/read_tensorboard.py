"""Prints the scalar series TensorBoard reads from a run folder, as JSON
{tag: [[step, value], ...]}: the reader core/tests/train.rs checks our event files with.

    python3 read_tensorboard.py RUN_DIR

Needs tensorboard (PyPI: pip install tensorboard; 2.21.0 here). Exits 3 when it is missing.
"""
import json
import sys

try:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
except ImportError:
    sys.exit(3)

# Keep every scalar (the default samples 10,000 per tag); purge_orphaned_data is TensorBoard's
# default: a SessionLog START drops the earlier files' events at and past its step.
acc = EventAccumulator(sys.argv[1], size_guidance={"scalars": 0})
acc.Reload()
print(json.dumps({tag: [[e.step, e.value] for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}))
