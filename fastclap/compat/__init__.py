"""Drop-in loss classes for CLIP / CLAP codebases: ``fastclap.compat.open_clip`` (``ClipLoss``,
``DistillClipLoss``, ``SigLipLoss``) and ``fastclap.compat.laion_clap`` (``ClipLoss`` with ``mlp_loss`` and
``weight_loss_kappa``). Same constructors, calls, values and gradients as the originals; fused, never B x B.
See docs/dropin.md for the lines to change in a training script."""
