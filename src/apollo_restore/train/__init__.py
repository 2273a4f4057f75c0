"""GAN training of Apollo generators (paper II-E, III-B): config, discriminator, losses, loop, DDP helpers.

Entry points: :func:`apollo_restore.train.config.load_config` and :func:`apollo_restore.train.loop.train`
(``apollo train CONFIG.yaml`` on the command line). See ``docs/training.md``.
"""
