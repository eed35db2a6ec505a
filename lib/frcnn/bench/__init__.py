"""Benchmarks of the detectors: the seed design's speed and size claims, measured (``frcnn bench``).

Modules:
  nets        a variant's test or train net as a caffe.Net with random weights; the stage
              split (backbone, RPN, proposal layer, RoI head); the cfg of a variant
  arithmetic  multiply-adds counted from a net's layer shapes; GEMM reference rates
  inference   whole-detector forward time per image, per stage, plus post-processing
  training    forward + backward time per iteration, Python layers separately
  models      parameter counts and caffemodel sizes
  report      machine header, terminal tables, JSON, CSV and a PNG chart
  commands    ``frcnn bench`` (registered by frcnn.cli)

Nothing here is imported by the library; caffe is imported only inside functions.
"""
