"""Artefacts shared between runs, each built once and kept in the content-addressed cache
(:mod:`tinyfw.cache`): the fine-tuned teacher, the GD student, the masked LM, the augmented
training set, the teacher's logits and the TD step-1 student. Each module has the same surface:
``KIND``, ``key_parts`` (its cache key, config sub-trees through :func:`keys.settings`, which
leaves cadence out), ``fingerprint`` (the same parts named by config key: what a resumed
training is checked against), the function that makes it, ``OUTPUTS`` and an ``ensure_*``
through :func:`tinyfw.cache.ensure_made`. The stages call ``ensure_*`` (cached, or made now) and
never import one another.
"""
