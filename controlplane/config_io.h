// SPDX-License-Identifier: Apache-2.0
// The configuration model to and from its two spellings: YAML (files,
// `apply -f`, `dump`) and JSON (the API, the persisted state). YAML is read
// into the same tree JSON gives and both go through one strict reader, so an
// unknown field or a bad value gets the same one-line error either way.
#pragma once

#include "config.h"

#include <nlohmann/json.hpp>

#include <string>
#include <string_view>

namespace sluice {

using json = nlohmann::ordered_json;

// Strict readers: unknown fields, wrong types and bad values throw
// sluice::error naming the field path ("vips[0].backends[1].weight"), or
// with field_names::by_option the sluicectl option ("--weight", for the
// single-object verbs, whose numbers arrive as the text typed). Numbers are
// plain decimal; in a file, unquoted.
config config_from_json(const json &j);
vip_config vip_from_json(const json &j, const std::string &where,
			 field_names names = field_names::by_position);
backend_config backend_from_json(const json &j, const std::string &where,
				 field_names names = field_names::by_position);
check_config check_from_json(const json &j, const std::string &where,
			     field_names names = field_names::by_position);
bgp_config bgp_from_json(const json &j); // node.bgp, not yet validate()d
json bgp_to_json(const bgp_config &b);

json config_to_json(const config &c);
json vip_to_json(const vip_config &v, bool with_backends);
json backend_to_json(const backend_config &b);
json check_to_json(const check_config &c);

// YAML text to the JSON tree (every scalar a string; the strict reader
// converts) and back. Syntax errors name line and column.
json yaml_to_json(std::string_view text);
std::string json_to_yaml(const json &j);

config config_from_yaml(std::string_view text);
std::string config_to_yaml(const config &c);

// Reads and validates a YAML file; errors start with the path.
config load_config_file(const std::string &path);

} // namespace sluice
