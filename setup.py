"""squeezenet-frcnn: SqueezeNet Faster R-CNN with OHEM for Caffe.

Packages:
  frcnn            lib/frcnn      the pure library (numpy, Cython kernels), no pycaffe needed
  frcnn._native    lib/frcnn/_native  compiled kernels, built from the sources in nms/
  roi_data_layer   layers/roi_data_layer  Caffe Python layers, py-faster-rcnn module names
  rpn              layers/rpn

The Cython CPU kernels always build.  The CUDA kernels build only where nvcc is found
(or FORCE_CUDA=1); a failed or skipped CUDA build never breaks the install: the
library falls back to the CPU with one warning.

Build time: the extensions compile side by side, one per core (BuildExtWithCuda sets
build_ext's ``parallel``), and without debug info (``-g0`` after Python's ``-g``: debug
info is nearly half of a Cython module's compile); measured in docs/caffe-build.md.
"""
import glob
import os
import re
import sys

import numpy
from Cython.Build import cythonize
from setuptools import Extension, find_packages, setup

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "nms"))
from build_cuda import BuildExtWithCuda, build_jobs, cuda_extensions  # noqa: E402

# The version is frcnn.__version__ (one place), read without importing the package.
VERSION = re.search(r'^__version__ = "([^"]+)"', open(os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "lib", "frcnn", "__init__.py")).read(),
    re.M).group(1)

# Every nms/<name>.pyx but the GPU wrappers becomes the CPU kernel frcnn._native.<name>.
cpu_extensions = [
    Extension(
        f"frcnn._native.{os.path.basename(path)[:-4]}",
        [path],
        include_dirs=[numpy.get_include()],
        # No fused multiply-add: the kernels round exactly like the numpy references.
        extra_compile_args=["-O3", "-g0", "-ffp-contract=off"],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
    )
    for path in sorted(glob.glob("nms/*.pyx"))
    if not os.path.basename(path).startswith("gpu_")
]

setup(
    name="squeezenet-frcnn",
    version=VERSION,
    description="SqueezeNet Faster R-CNN with online hard example mining, as Caffe Python layers",
    python_requires=">=3.9",
    package_dir={
        "frcnn": "lib/frcnn",
        "roi_data_layer": "layers/roi_data_layer",
        "rpn": "layers/rpn",
    },
    packages=["frcnn", *(f"frcnn.{p}" for p in find_packages("lib/frcnn")),
              "roi_data_layer", "rpn"],
    # The CUDA module first: nvcc then g++ is the longest chain, the CPU kernels fill the
    # other cores meanwhile.
    ext_modules=cuda_extensions()
    + (cythonize(cpu_extensions, language_level=3, nthreads=build_jobs())
       if cpu_extensions else []),
    cmdclass={"build_ext": BuildExtWithCuda},
    # OpenCV 4.x: images, and the opencv deploy backend (OpenCV 5 has no Caffe importer)
    install_requires=["numpy>=2.0", "easydict", "pyyaml", "opencv-python-headless>=4.8,<5",
                      "protobuf", "six"],
    extras_require={"test": ["pytest", "hypothesis"],
                    # a deploy-only install: the onnxruntime backend, no Caffe build
                    "deploy": ["onnxruntime"],
                    "export": ["onnx", "onnxruntime"],
                    # the openvino backend (an export's graphs in OpenVINO)
                    "openvino": ["openvino"]},
    entry_points={"console_scripts": ["frcnn = frcnn.cli:main"]},
    zip_safe=False,
)
