"""The export phase: ONNX fp32 and int8, the gates against torch, and int8 on each instruction set under qemu."""
