"""What inference needs and nothing else: the model card, the ONNX predictor and file hashing. Torch-free; the
images copy this folder."""
