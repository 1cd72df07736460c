"""Artefacts shared between runs, each built once and kept in the content-addressed cache
(:mod:`tinyfw.cache`): the fine-tuned teacher, the GD student, the masked LM, the augmented
training set, the teacher's logits and the TD step-1 student. Each module owns its cache key
(what the artefact depends on), how it is built and where it is registered; the stages call
its ``ensure_*`` function (cached, or built now) and never import one another.
"""
