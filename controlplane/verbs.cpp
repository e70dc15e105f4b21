// SPDX-License-Identifier: Apache-2.0
#include "verbs.h"

namespace sluice {

const verb_def *find_verb(std::string_view api_name)
{
	std::string_view noun = api_name, word;
	if (auto dot = api_name.find('.'); dot != std::string_view::npos) {
		noun = api_name.substr(0, dot);
		word = api_name.substr(dot + 1);
		// "status." is not "status": a trailing dot names no verb.
		if (word.empty())
			return nullptr;
	}
	for (const auto &v : verb_table)
		if (v.noun == noun && v.word == word)
			return &v;
	return nullptr;
}

} // namespace sluice
