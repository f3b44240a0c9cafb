/* The reference kernels once more, under ref_ names (see ref_renamed.h): the expected
 * values kernel_check compares every ISA kernel against. */
#include "ref_renamed.h"

#include "../kernels/ref/kernels.c"
