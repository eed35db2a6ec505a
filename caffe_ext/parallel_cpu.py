"""Caffe's element-wise CPU loops, rewritten as independent slices (patches applied by
build_caffe.py).

Caffe parallelises only through BLAS: its GEMMs use every core, every other loop one.  In
a training iteration of the demo net (SqueezeNet with MVN + Scale after each trunk
convolution, 320 x 427, 64 RoIs) those loops are about a third of the time: ReLU, Scale,
MVN, max pooling, im2col/col2im and ROIPooling.  Each patch below writes one of them over
independent slices (rows, planes, channels) under ``#pragma omp parallel for``; each slice
is computed in the same order as before, so outputs are bit-identical to the serial loop
at any thread count (Scale's rewrite is the exception: see SCALE_*).  Loops over fewer
than PARALLEL_MIN elements stay serial.

The threads are opt-in (``FRCNN_CAFFE_OPENMP=1`` at build time compiles with
``-fopenmp``).  Measured on the 2-vCPU Intel Xeon VM (2026-12-02, one training iteration
of the demo net layer by layer, interleaved runs of both builds; the machine was noisy
that hour, so read the pattern, not the digits): with OPENBLAS_NUM_THREADS=2, 0.37-0.49 s
without OpenMP against 0.64-0.77 s with two OpenMP threads (1.1-1.2 s with
OMP_WAIT_POLICY=passive); with one BLAS thread, 0.58 s with one OpenMP thread against
1.0 s with two.  The GEMMs, not the patched loops, got slower: the second thread costs
the other work more than it saves (on this VM the two vCPUs behave like one core's
hyperthreads).  By default the build uses ``-fopenmp-simd``: the ``omp simd`` loops
vectorise, the parallel pragmas are ignored, and what remains is the single-thread work
the rewrites save (Scale: two passes over the blob forward and backward instead of six
and seven; max pooling's branch-free scan).  Re-measure on a machine with real cores.

This module is data only: ``{file: [(old, new, what), ...]}`` in PATCHES, each ``old`` a
verbatim piece of the pinned archive that must occur exactly once.  With OpenMP on, the
thread count is ``OMP_NUM_THREADS``; the caffe package sets it from
``OPENBLAS_NUM_THREADS`` when only that is given, so one knob sets both.
"""

PARALLEL_MIN = 32768  # elements; below this a loop runs on the calling thread
# build_caffe.py defines it for every compile (-DFRCNN_PARALLEL_MIN=...): the patches below
# and ROIPooling's overlay read the one value.
PARALLEL_MIN_MACRO = "FRCNN_PARALLEL_MIN"


def _if(count_expr: str) -> str:
    return f"if (static_cast<long>({count_expr}) >= {PARALLEL_MIN_MACRO})"


# --- ReLU: forward and backward over the flat blob ---------------------------------------

RELU_CPP = "src/caffe/layers/relu_layer.cpp"
RELU_FORWARD_OLD = """  for (int i = 0; i < count; ++i) {
    top_data[i] = std::max(bottom_data[i], Dtype(0))
        + negative_slope * std::min(bottom_data[i], Dtype(0));
  }
"""
RELU_FORWARD_NEW = f"""  // squeezenet-frcnn: on all cores (caffe_ext/parallel_cpu.py)
  #pragma omp parallel for simd schedule(static) {_if("count")}
""" + RELU_FORWARD_OLD
# ReLU's backward multiplies by ``(x > 0) + slope * (x <= 0)``: two bool-to-float
# conversions per element that GCC leaves scalar (18 ms for relu_conv1's 2.2M elements).
# The same factor as a select vectorises; the products, NaN inputs included, are
# bit-identical.
RELU_BACKWARD_OLD = """    for (int i = 0; i < count; ++i) {
      bottom_diff[i] = top_diff[i] * ((bottom_data[i] > 0)
          + negative_slope * (bottom_data[i] <= 0));
    }
"""
RELU_BACKWARD_NEW = f"""    // squeezenet-frcnn: the factor as a select, which vectorises; on all cores
    #pragma omp parallel for simd schedule(static) {_if("count")}
    for (int i = 0; i < count; ++i) {{
      const Dtype x = bottom_data[i];
      bottom_diff[i] = top_diff[i]
          * (x > 0 ? Dtype(1) : (x <= 0 ? negative_slope : Dtype(0)));
    }}
"""

# --- Max pooling: each (n, c) plane on its own ------------------------------------------
# Caffe's scan walks planes by advancing pointers; the scan below indexes each plane and
# walks one output row at a time, window offset by window offset, branch-free: the same
# positions in the same order with the same strict '>', so outputs and masks are
# identical (SqueezeNet's pool1 took 86 ms at 600 x 1000 before; about 5x faster on one
# core).  Planes run on all cores, each with its own row of argmax indices.

POOLING_CPP = "src/caffe/layers/pooling_layer.cpp"
POOLING_FORWARD_OLD = """    caffe_set(top_count, Dtype(-FLT_MAX), top_data);
    // The main loop
    for (int n = 0; n < bottom[0]->num(); ++n) {
      for (int c = 0; c < channels_; ++c) {
        for (int ph = 0; ph < pooled_height_; ++ph) {
          for (int pw = 0; pw < pooled_width_; ++pw) {
            int hstart = ph * stride_h_ - pad_h_;
            int wstart = pw * stride_w_ - pad_w_;
            int hend = min(hstart + kernel_h_, height_);
            int wend = min(wstart + kernel_w_, width_);
            hstart = max(hstart, 0);
            wstart = max(wstart, 0);
            const int pool_index = ph * pooled_width_ + pw;
            for (int h = hstart; h < hend; ++h) {
              for (int w = wstart; w < wend; ++w) {
                const int index = h * width_ + w;
                if (bottom_data[index] > top_data[pool_index]) {
                  top_data[pool_index] = bottom_data[index];
                  if (use_top_mask) {
                    top_mask[pool_index] = static_cast<Dtype>(index);
                  } else {
                    mask[pool_index] = index;
                  }
                }
              }
            }
          }
        }
        // compute offset
        bottom_data += bottom[0]->offset(0, 1);
        top_data += top[0]->offset(0, 1);
        if (use_top_mask) {
          top_mask += top[0]->offset(0, 1);
        } else {
          mask += top[0]->offset(0, 1);
        }
      }
    }
    break;
"""
POOLING_FORWARD_NEW = f"""    caffe_set(top_count, Dtype(-FLT_MAX), top_data);
    // squeezenet-frcnn: planes on all cores, rows branch-free (caffe_ext/parallel_cpu.py)
    {{
      const int planes = bottom[0]->num() * channels_;
      const int in_plane = height_ * width_;
      const int out_plane = pooled_height_ * pooled_width_;
      #pragma omp parallel {_if("top_count * kernel_h_ * kernel_w_")}
      {{
        std::vector<int> row_index(pooled_width_);
        #pragma omp for schedule(static)
        for (int p = 0; p < planes; ++p) {{
          const Dtype* plane_in = bottom_data + static_cast<size_t>(p) * in_plane;
          const size_t out_at = static_cast<size_t>(p) * out_plane;
          for (int ph = 0; ph < pooled_height_; ++ph) {{
            int hstart = ph * stride_h_ - pad_h_;
            const int hend = min(hstart + kernel_h_, height_);
            hstart = max(hstart, 0);
            Dtype* __restrict__ best = top_data + out_at + ph * pooled_width_;
            int* __restrict__ best_index = row_index.data();
            for (int pw = 0; pw < pooled_width_; ++pw) {{
              best_index[pw] = -1;
            }}
            for (int h = hstart; h < hend; ++h) {{
              for (int kw = 0; kw < kernel_w_; ++kw) {{
                // outputs whose window holds column w = pw * stride_w_ - pad_w_ + kw
                const int lo_num = pad_w_ - kw;
                const int pw_lo = lo_num <= 0 ? 0 : (lo_num + stride_w_ - 1) / stride_w_;
                const int hi_num = width_ - 1 + pad_w_ - kw;
                const int pw_hi = hi_num < 0 ? 0 : min(hi_num / stride_w_ + 1, pooled_width_);
                const int offset = h * width_ - pad_w_ + kw;
                const Dtype* __restrict__ row = plane_in + offset;
                #pragma omp simd
                for (int pw = pw_lo; pw < pw_hi; ++pw) {{
                  const Dtype v = row[pw * stride_w_];
                  const bool take = v > best[pw];
                  best[pw] = take ? v : best[pw];
                  best_index[pw] = take ? offset + pw * stride_w_ : best_index[pw];
                }}
              }}
            }}
            const size_t row_at = out_at + ph * pooled_width_;
            for (int pw = 0; pw < pooled_width_; ++pw) {{
              if (use_top_mask) {{
                top_mask[row_at + pw] = static_cast<Dtype>(best_index[pw]);
              }} else {{
                mask[row_at + pw] = best_index[pw];
              }}
            }}
          }}
        }}
      }}
    }}
    break;
"""
POOLING_BACKWARD_OLD = """    for (int n = 0; n < top[0]->num(); ++n) {
      for (int c = 0; c < channels_; ++c) {
        for (int ph = 0; ph < pooled_height_; ++ph) {
          for (int pw = 0; pw < pooled_width_; ++pw) {
            const int index = ph * pooled_width_ + pw;
            const int bottom_index =
                use_top_mask ? top_mask[index] : mask[index];
            bottom_diff[bottom_index] += top_diff[index];
          }
        }
        bottom_diff += bottom[0]->offset(0, 1);
        top_diff += top[0]->offset(0, 1);
        if (use_top_mask) {
          top_mask += top[0]->offset(0, 1);
        } else {
          mask += top[0]->offset(0, 1);
        }
      }
    }
    break;
"""
# A window without a winner (all NaN) keeps index -1: Caffe would write one element before
# the plane; it is skipped here.
POOLING_BACKWARD_NEW = f"""    // squeezenet-frcnn: planes on all cores (caffe_ext/parallel_cpu.py)
    {{
      const int planes = top[0]->num() * channels_;
      const int in_plane = height_ * width_;
      const int out_plane = pooled_height_ * pooled_width_;
      #pragma omp parallel for schedule(static) {_if("top[0]->count()")}
      for (int p = 0; p < planes; ++p) {{
        Dtype* plane_diff = bottom_diff + static_cast<size_t>(p) * in_plane;
        const size_t at = static_cast<size_t>(p) * out_plane;
        for (int index = 0; index < out_plane; ++index) {{
          const int bottom_index =
              use_top_mask ? static_cast<int>(top_mask[at + index]) : mask[at + index];
          if (bottom_index >= 0) {{
            plane_diff[bottom_index] += top_diff[at + index];
          }}
        }}
      }}
    }}
    break;
"""

# --- Scale with a learned scale (and bias) ------------------------------------------------
# Caffe's Scale scales each row with a BLAS call, adds the bias through a rank-1 GEMM of
# its Bias sub-layer, and in its backward makes a full temporary product for the scale's
# gradient before reducing it with GEMVs: four to six passes over the blob, one core.
# With the scale a parameter (one bottom), the forward is one pass, y = x * s + b (the
# input kept first when in place, as Caffe does), and the backward one pass per channel:
# ds += sum(dy * x), db += sum(dy) (accumulated in double, then added to the parameter
# diffs as Caffe's param diffs accumulate), dx = dy * s.  Channels and rows run on all
# cores.  Not bit-identical to Caffe's: the sums round differently and x * s + b may be
# one fused multiply-add.  Scale as a second bottom keeps Caffe's code.

SCALE_CPP = "src/caffe/layers/scale_layer.cpp"
SCALE_FORWARD_OLD = """void ScaleLayer<Dtype>::Forward_cpu(
    const vector<Blob<Dtype>*>& bottom, const vector<Blob<Dtype>*>& top) {
"""
SCALE_FORWARD_NEW = SCALE_FORWARD_OLD + f"""  // squeezenet-frcnn: a learned scale in one pass on all cores (caffe_ext/parallel_cpu.py)
  if (bottom.size() == 1) {{
    const Dtype* x = bottom[0]->cpu_data();
    Dtype* saved = (bottom[0] == top[0]) ? temp_.mutable_cpu_data() : NULL;
    Dtype* y = top[0]->mutable_cpu_data();
    const Dtype* s = this->blobs_[0]->cpu_data();
    const Dtype* b = bias_layer_ ? this->blobs_[bias_param_id_]->cpu_data() : NULL;
    const int rows = outer_dim_ * scale_dim_;
    const int inner = inner_dim_;
    #pragma omp parallel for schedule(static) {_if("rows * inner")}
    for (int r = 0; r < rows; ++r) {{
      const size_t at = static_cast<size_t>(r) * inner;
      const Dtype sd = s[r % scale_dim_];
      if (saved) {{
        #pragma omp simd
        for (int i = 0; i < inner; ++i) saved[at + i] = x[at + i];
      }}
      if (b) {{
        const Dtype bd = b[r % scale_dim_];
        #pragma omp simd
        for (int i = 0; i < inner; ++i) y[at + i] = x[at + i] * sd + bd;
      }} else {{
        #pragma omp simd
        for (int i = 0; i < inner; ++i) y[at + i] = x[at + i] * sd;
      }}
    }}
    return;
  }}
"""
SCALE_BACKWARD_OLD = """void ScaleLayer<Dtype>::Backward_cpu(const vector<Blob<Dtype>*>& top,
    const vector<bool>& propagate_down, const vector<Blob<Dtype>*>& bottom) {
"""
SCALE_BACKWARD_NEW = SCALE_BACKWARD_OLD + f"""  // squeezenet-frcnn: a learned scale, one pass per channel on all cores
  if (bottom.size() == 1) {{
    const bool in_place = (bottom[0] == top[0]);
    const Dtype* dy = top[0]->cpu_diff();
    const Dtype* x = (in_place ? &temp_ : bottom[0])->cpu_data();
    const Dtype* s = this->blobs_[0]->cpu_data();
    Dtype* ds = this->param_propagate_down_[0] ? this->blobs_[0]->mutable_cpu_diff() : NULL;
    Dtype* db = (bias_layer_ && this->param_propagate_down_[bias_param_id_])
        ? this->blobs_[bias_param_id_]->mutable_cpu_diff() : NULL;
    Dtype* dx = propagate_down[0] ? bottom[0]->mutable_cpu_diff() : NULL;
    const int inner = inner_dim_;
    #pragma omp parallel for schedule(static) {_if("top[0]->count()")}
    for (int d = 0; d < scale_dim_; ++d) {{
      const Dtype sd = s[d];
      double sum_dyx = 0, sum_dy = 0;
      for (int n = 0; n < outer_dim_; ++n) {{
        const size_t at = (static_cast<size_t>(n) * scale_dim_ + d) * inner;
        if (ds || db) {{
          #pragma omp simd reduction(+:sum_dyx, sum_dy)
          for (int i = 0; i < inner; ++i) {{
            sum_dyx += static_cast<double>(dy[at + i]) * x[at + i];
            sum_dy += dy[at + i];
          }}
        }}
        if (dx) {{  // after the sums: in place, dx is dy
          #pragma omp simd
          for (int i = 0; i < inner; ++i) dx[at + i] = dy[at + i] * sd;
        }}
      }}
      if (ds) ds[d] += static_cast<Dtype>(sum_dyx);
      if (db) db[d] += static_cast<Dtype>(sum_dy);
    }}
    return;
  }}
"""

# --- im2col / col2im: channels on all cores ---------------------------------------------
# Each input channel owns kernel_h * kernel_w rows of the column buffer, so channels are
# independent in both directions (col2im adds into its own channel's plane only).

IM2COL_CPP = "src/caffe/util/im2col.cpp"
IM2COL_LOOP = "  for (int channel = channels; channel--; data_im += channel_size) {\n"


def _im2col_loop(im_type: str, col_type: str) -> str:
    return f"""  // squeezenet-frcnn: channels on all cores (caffe_ext/parallel_cpu.py)
  const size_t col_channel_size =
      static_cast<size_t>(kernel_h) * kernel_w * output_h * output_w;
  {im_type}* const im_start = data_im;
  {col_type}* const col_start = data_col;
  #pragma omp parallel for schedule(static) {_if("col_channel_size * channels")}
  for (int channel = 0; channel < channels; ++channel) {{
    {im_type}* data_im = im_start + static_cast<size_t>(channel) * channel_size;
    {col_type}* data_col = col_start + channel * col_channel_size;
"""


IM2COL_NEW = _im2col_loop("const Dtype", "Dtype")
COL2IM_NEW = _im2col_loop("Dtype", "const Dtype")
IM2COL_FUNCTION = "void im2col_cpu(const Dtype* data_im, const int channels,"
COL2IM_FUNCTION = "void col2im_cpu(const Dtype* data_col, const int channels,"

# --- MVN: rows on all cores (the row loops are build_caffe.py's MVN_CPU) -----------------
MVN_ROWS = f"  #pragma omp parallel for schedule(static) {_if('bottom[0]->count()')}\n"

PATCHES = {
    RELU_CPP: [(RELU_FORWARD_OLD, RELU_FORWARD_NEW, "ReLU's forward loop"),
               (RELU_BACKWARD_OLD, RELU_BACKWARD_NEW, "ReLU's backward loop")],
    POOLING_CPP: [(POOLING_FORWARD_OLD, POOLING_FORWARD_NEW, "max pooling's forward scan"),
                  (POOLING_BACKWARD_OLD, POOLING_BACKWARD_NEW, "max pooling's backward loop")],
    SCALE_CPP: [(SCALE_FORWARD_OLD, SCALE_FORWARD_NEW, "Scale's Forward_cpu"),
                (SCALE_BACKWARD_OLD, SCALE_BACKWARD_NEW, "Scale's Backward_cpu")],
}
