"""Training: the Trainer and its loop (trainer.py, loop.py), the steps of each method
(supervised.py, adversarial.py), data streams (loaders.py), optimisers and schedules
(optim.py, schedules.py), the run directory and resuming (run_dir.py, resume.py), and
fine-tuning / BatchNorm re-estimation of an existing network (finetune.py, batchnorm.py)."""
