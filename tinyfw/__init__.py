"""tinyfw: TinyBERT-style two-stage knowledge distillation of BERT encoders."""

__version__ = "0.1.0"
