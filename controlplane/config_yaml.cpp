// SPDX-License-Identifier: Apache-2.0
#include "config_io.h"

#include "error.h"

#include <yaml-cpp/yaml.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

namespace sluice {

namespace {

json node_to_json(const YAML::Node &n)
{
	switch (n.Type()) {
	case YAML::NodeType::Undefined:
	case YAML::NodeType::Null:
		return nullptr;
	case YAML::NodeType::Scalar:
		// Quoted or not, a scalar stays text here: the strict reader knows
		// which fields are numbers, so "080" or "1e3" never sneak in as one.
		return n.Scalar();
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
			const std::string &key = kv.first.Scalar();
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
