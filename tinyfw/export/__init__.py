"""From a distilled student to deployable forms: vocabulary pruning (``vocab``), ONNX export
and ONNX Runtime sessions (``onnx``), dynamic int8 quantization (``quantize``), the forms
written with their cards (``write``) and compared (``forms``). Every function takes explicit
arguments; ``tinyfw/stages/export.py`` wires them."""
