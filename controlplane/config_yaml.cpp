// SPDX-License-Identifier: Apache-2.0
#include "config_io.h"

#include "error.h"

#include <yaml-cpp/yaml.h>

#include <cerrno>
#include <charconv>
#include <cstring>
#include <fstream>
#include <sstream>

namespace sluice {

namespace {

// Whether `s` is UTF-8 (RFC 3629: no overlongs, no surrogates, at most
// U+10FFFF). YAML files are text, the API carries JSON, and JSON strings
// are UTF-8: a byte string that is not would make every later dump throw.
bool utf8(const std::string &s)
{
	size_t i = 0;
	while (i < s.size()) {
		const auto c = static_cast<unsigned char>(s[i]);
		size_t n;
		uint32_t cp;
		if (c < 0x80) {
			i++;
			continue;
		} else if ((c & 0xE0) == 0xC0) {
			n = 1;
			cp = c & 0x1F;
		} else if ((c & 0xF0) == 0xE0) {
			n = 2;
			cp = c & 0x0F;
		} else if ((c & 0xF8) == 0xF0) {
			n = 3;
			cp = c & 0x07;
		} else {
			return false;
		}
		for (size_t k = 1; k <= n; k++) {
			if (i + k >= s.size())
				return false;
			const auto d = static_cast<unsigned char>(s[i + k]);
			if ((d & 0xC0) != 0x80)
				return false;
			cp = cp << 6 | (d & 0x3F);
		}
		static const uint32_t min_for[4] = {0, 0x80, 0x800, 0x10000};
		if (cp < min_for[n] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
			return false;
		i += n + 1;
	}
	return true;
}

const std::string &text_of(const YAML::Node &n)
{
	const std::string &s = n.Scalar();
	if (!utf8(s))
		throw error("yaml: line {}, column {}: not UTF-8 text", n.Mark().line + 1, n.Mark().column + 1);
	return s;
}

json node_to_json(const YAML::Node &n)
{
	switch (n.Type()) {
	case YAML::NodeType::Undefined:
	case YAML::NodeType::Null:
		return nullptr;
	case YAML::NodeType::Scalar: {
		// Only an unquoted scalar of plain decimal digits is a number
		// (yaml-cpp tags unquoted scalars "?"); the rest stays text, so the
		// strict reader refuses "50", 080 or 1e3 where a number goes, as
		// it refuses them in JSON.
		const std::string &s = text_of(n);
		uint64_t v = 0;
		if (n.Tag() == "?" && !s.empty() && s.find_first_not_of("0123456789") == std::string::npos &&
		    (s.size() == 1 || s[0] != '0')) {
			auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
			if (ec == std::errc())
				return v;
		}
		return s;
	}
	case YAML::NodeType::Sequence: {
		json a = json::array();
		for (const auto &e : n)
			a.push_back(node_to_json(e));
		return a;
	}
	case YAML::NodeType::Map: {
		json o = json::object();
		for (const auto &kv : n) {
			if (!kv.first.IsScalar())
				throw error("yaml: line {}: a key must be a plain name",
					    kv.first.Mark().line + 1);
			const std::string &key = text_of(kv.first);
			if (o.contains(key))
				throw error("yaml: line {}: duplicate key '{}'", kv.first.Mark().line + 1,
					    key);
			o[key] = node_to_json(kv.second);
		}
		return o;
	}
	}
	return nullptr;
}

void emit(YAML::Emitter &out, const json &j, bool flow)
{
	if (j.is_object()) {
		out << (flow ? YAML::Flow : YAML::Block) << YAML::BeginMap;
		for (auto it = j.begin(); it != j.end(); ++it) {
			out << YAML::Key << it.key() << YAML::Value;
			// Checks read best on one line, as in the documented schema.
			emit(out, it.value(), flow || it.key() == "check" || it.key() == "node");
		}
		out << YAML::EndMap;
	} else if (j.is_array()) {
		out << (flow ? YAML::Flow : YAML::Block) << YAML::BeginSeq;
		for (const auto &e : j)
			emit(out, e, flow);
		out << YAML::EndSeq;
	} else if (j.is_string()) {
		out << j.get<std::string>();
	} else if (j.is_number_unsigned()) {
		out << j.get<uint64_t>();
	} else if (j.is_number_integer()) {
		out << j.get<int64_t>();
	} else if (j.is_boolean()) {
		out << j.get<bool>();
	} else if (j.is_null()) {
		out << YAML::Null;
	} else {
		out << j.dump();
	}
}

} // namespace

json yaml_to_json(std::string_view text)
{
	YAML::Node root;
	try {
		root = YAML::Load(std::string(text));
	} catch (const YAML::Exception &e) {
		throw error("yaml: line {}, column {}: {}", e.mark.line + 1, e.mark.column + 1, e.msg);
	}
	return node_to_json(root);
}

std::string json_to_yaml(const json &j)
{
	YAML::Emitter out;
	out.SetIndent(2);
	emit(out, j, false);
	return std::string(out.c_str()) + "\n";
}

config config_from_yaml(std::string_view text)
{
	return config_from_json(yaml_to_json(text));
}

std::string config_to_yaml(const config &c)
{
	return json_to_yaml(config_to_json(c));
}

config load_config_file(const std::string &path)
{
	std::ifstream in(path);
	if (!in)
		throw error("{}: cannot read: {}", path, std::strerror(errno));
	std::stringstream ss;
	ss << in.rdbuf();
	try {
		return config_from_yaml(ss.str());
	} catch (const error &e) {
		throw error("{}: {}", path, e.what());
	}
}

} // namespace sluice
