"""Serving the ONNX model: the HTTP API, its micro-batcher, prediction logs, the Lambda handler and the monitor.

Imports stay torch-free: onnxruntime, tokenizers, numpy, FastAPI/uvicorn and prometheus_client only.
"""
