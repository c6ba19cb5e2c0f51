//! NVRTC kernels generated from templates (filled in by the kernels worker).
