"""Launching stages on Slurm or locally through submitit (`mtr launch STAGE ...`).

What a stage is (its config class, run function, and whether it runs as a job array or one task per
rank) lives in the stage registry, `mtr_hpc.stages`. This package only submits stages and runs them
inside the submitted tasks.
"""
