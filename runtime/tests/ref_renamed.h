/* Renames every public kernel of kernels.h to ref_<name>, so that a second copy of the
 * reference kernels (ref_renamed.c) links next to the ISA kernels under test. Keep in step
 * with kernels.h: kernel_check declares ref_<name> for each kernel it tests, so a kernel
 * missing here fails to link rather than silently comparing a kernel with itself. */
#define bertc_kernel_impl ref_bertc_kernel_impl
#define bertc_linear ref_bertc_linear
#define bertc_linear_packed ref_bertc_linear_packed
#define bertc_linear_packed_f16 ref_bertc_linear_packed_f16
#define bertc_linear_packed_i8 ref_bertc_linear_packed_i8
#define bertc_linear_sparse ref_bertc_linear_sparse
#define bertc_linear_sparse_i8 ref_bertc_linear_sparse_i8
#define bertc_embedding ref_bertc_embedding
#define bertc_layer_norm ref_bertc_layer_norm
#define bertc_rms_norm ref_bertc_rms_norm
#define bertc_attention ref_bertc_attention
#define bertc_mask_bias ref_bertc_mask_bias
#define bertc_position_ids ref_bertc_position_ids
#define bertc_binary ref_bertc_binary
#define bertc_unary ref_bertc_unary
#define bertc_pow ref_bertc_pow
#define bertc_softmax ref_bertc_softmax
#define bertc_transpose ref_bertc_transpose
#define bertc_matmul ref_bertc_matmul
#define bertc_slice ref_bertc_slice
