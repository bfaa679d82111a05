"""Edge targets: a model version as an OCI artifact (ONNX model, schema, baseline) and the minimal
runtime a device runs (`model_packages.edge.runtime`: onnxruntime + the validation code)."""
