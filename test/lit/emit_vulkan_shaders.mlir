// REQUIRES: vulkan
// Every shader --emit-vulkan can name compiles to SPIR-V for Vulkan 1.1 (glslangValidator prints the
// file name of each shader it compiled); gemm.comp also with -DWEIGHT_F16 and -DWEIGHT_I8, the fp16 and int8 variants, and
// attention.comp with -DSEQ_FROM_PUSH, the variant of a dynamic length, and -DV_APART (MobileBERT's V rows apart),
// alone and with every other define.
// RUN: glslangValidator -V --target-env vulkan1.1 -o %t.spv %shaders/gemm.comp | FileCheck %s --check-prefix=GEMM
// RUN: glslangValidator -V --target-env vulkan1.1 -DWEIGHT_F16 -o %t.spv %shaders/gemm.comp | FileCheck %s --check-prefix=GEMM
// int8 weights: a widening load needs only storageBuffer8BitAccess, no Int8 arithmetic (shaderInt8)
// RUN: glslangValidator -V -H --target-env vulkan1.1 -DWEIGHT_I8 -o %t.spv %shaders/gemm.comp | FileCheck %s --check-prefix=I8
// I8: gemm.comp
// I8-NOT: Capability Int8
// I8: Capability StorageBuffer8BitAccess
// I8-NOT: Capability Int8
// RUN: glslangValidator -V --target-env vulkan1.1 -o %t.spv %shaders/attention.comp | FileCheck %s --check-prefix=ATTN
// RUN: glslangValidator -V --target-env vulkan1.1 -DSEQ_FROM_PUSH -o %t.spv %shaders/attention.comp | FileCheck %s --check-prefix=ATTN
// RUN: glslangValidator -V --target-env vulkan1.1 -DSEQ_FROM_PUSH -DREL_BIAS -DWINDOW -o %t.spv %shaders/attention.comp | FileCheck %s --check-prefix=ATTN
// RUN: glslangValidator -V --target-env vulkan1.1 -DWINDOW -o %t.spv %shaders/attention.comp | FileCheck %s --check-prefix=ATTN
// RUN: glslangValidator -V --target-env vulkan1.1 -DV_APART -o %t.spv %shaders/attention.comp | FileCheck %s --check-prefix=ATTN
// RUN: glslangValidator -V --target-env vulkan1.1 -DSEQ_FROM_PUSH -DREL_BIAS -DV_APART -o %t.spv %shaders/attention.comp | FileCheck %s --check-prefix=ATTN
// RUN: glslangValidator -V --target-env vulkan1.1 -DSEQ_FROM_PUSH -DREL_BIAS -DV_APART -DWINDOW -o %t.spv %shaders/attention.comp | FileCheck %s --check-prefix=ATTN
// RUN: glslangValidator -V --target-env vulkan1.1 -o %t.spv %shaders/layer_norm.comp | FileCheck %s --check-prefix=REST
// RUN: glslangValidator -V --target-env vulkan1.1 -o %t.spv %shaders/softmax.comp | FileCheck %s --check-prefix=REST
// RUN: glslangValidator -V --target-env vulkan1.1 -o %t.spv %shaders/embedding.comp | FileCheck %s --check-prefix=REST
// RUN: glslangValidator -V --target-env vulkan1.1 -o %t.spv %shaders/binary.comp | FileCheck %s --check-prefix=REST
// RUN: glslangValidator -V --target-env vulkan1.1 -o %t.spv %shaders/unary.comp | FileCheck %s --check-prefix=REST
// RUN: glslangValidator -V --target-env vulkan1.1 -o %t.spv %shaders/transpose.comp | FileCheck %s --check-prefix=REST
// RUN: glslangValidator -V --target-env vulkan1.1 -o %t.spv %shaders/slice.comp | FileCheck %s --check-prefix=REST
// RUN: glslangValidator -V --target-env vulkan1.1 -o %t.spv %shaders/mask_bias.comp | FileCheck %s --check-prefix=REST
// RUN: glslangValidator -V --target-env vulkan1.1 -o %t.spv %shaders/position_ids.comp | FileCheck %s --check-prefix=REST
// RUN: glslangValidator -V --target-env vulkan1.1 -o %t.spv %shaders/cast.comp | FileCheck %s --check-prefix=REST
// RUN: glslangValidator -V --target-env vulkan1.1 -o %t.spv %shaders/token_dropout.comp | FileCheck %s --check-prefix=REST
// RUN: glslangValidator -V --target-env vulkan1.1 -o %t.spv %shaders/relative_gather.comp | FileCheck %s --check-prefix=REST
// GEMM: gemm.comp
// GEMM-NOT: ERROR
// ATTN: attention.comp
// ATTN-NOT: ERROR
// REST: {{[a-z_]+}}.comp
// REST-NOT: ERROR
