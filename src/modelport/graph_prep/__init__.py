"""Graph preparation before INT8: the CNN recipe (BatchNorm folding, cross-layer equalization,
bias correction) on the ONNX graph, shared by every backend's quantizer (recipe.py).

One concern per module; nothing heavy is imported here.
"""
