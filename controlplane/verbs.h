// SPDX-License-Identifier: Apache-2.0
// sluiced's verbs as one table (verbs.def): the service dispatches on it,
// sluicectl parses, helps and builds requests from it, so a verb cannot be
// known to one and not the other. Plain data, no service code: sluicectl
// links it without the service.
#pragma once

#include <array>
#include <cstddef>
#include <string>
#include <string_view>

namespace sluice {

enum class verb_id : size_t {
#define SLUICE_VERB(id, noun, word, access, args, help) id,
#include "verbs.def"
#undef SLUICE_VERB
};

// Whether a verb changes the running configuration: the line a peer
// credential check will draw between who may look and who may change.
enum class verb_access { read, change };

struct verb_def {
	verb_id id;
	std::string_view noun;
	std::string_view word; // empty: the noun alone is the verb
	verb_access access;
	std::string_view args; // positional synopsis, e.g. "VIP ADDRESS"
	std::string_view help; // one line

	// What a request names it by: "backend.add", "status".
	std::string api_name() const
	{
		return word.empty() ? std::string(noun) : std::string(noun) + "." + std::string(word);
	}
};

inline constexpr std::array verb_table = {
#define SLUICE_VERB(id, noun, word, access, args, help)                                            \
	verb_def{verb_id::id, noun, word, verb_access::access, args, help},
#include "verbs.def"
#undef SLUICE_VERB
};

constexpr size_t verb_count = verb_table.size();

// The entry a request's verb names ("backend.add"); nullptr if none.
const verb_def *find_verb(std::string_view api_name);

} // namespace sluice
