"""Deployment: export to ONNX and to a Caffe net without Python layers; runtime backends."""
