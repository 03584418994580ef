/* attention_types.h — plain-data structs used in the attention kernels' signatures (none: the
 * attention kernels take explicit int64 sizes). */
#pragma once
#include <stdint.h>
