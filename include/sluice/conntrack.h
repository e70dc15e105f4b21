/* SPDX-License-Identifier: Apache-2.0 */
#pragma once
#include <sluice/flow.h>
struct sluice_ct_table;
