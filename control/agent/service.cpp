#include "service.hpp"

#include <algorithm>
#include <arpa/inet.h>

#include <charconv>
#include <cstring>
#include <initializer_list>
#include <limits>
#include <map>
#include <optional>
#include <utility>
#include <vector>

#include "arm_json.hpp"
#include "table_eval.hpp"
#include "net.hpp"
#include "packet.hpp"
#include "validate.hpp"

extern "C" {
#include "lg_route.h"
}

namespace lg::agent {

using json = nlohmann::json;

json error_response(const json &id, int code, const std::string &message, const json &data)
{
	json e{{"code", code}, {"message", message}};
	if (!data.is_null())
		e["data"] = data;
	return json{{"jsonrpc", "2.0"}, {"id", id}, {"error", e}};
}

namespace {

// Thrown inside a method, caught by handle(): never leaves this file.
struct RpcError {
	int code;
	std::string message;
	json data;
};

[[noreturn]] void fail(int code, std::string msg, json data = nullptr)
{
	throw RpcError{code, std::move(msg), std::move(data)};
}

[[noreturn]] void invalid(const std::string &param, const std::string &msg)
{
	fail(kInvalidParams, "invalid params: " + param + ": " + msg, json{{"param", param}});
}

[[noreturn]] void not_found(const std::string &path)
{
	fail(kNotFound, path + ": not found", json{{"object", path}});
}

// Validation messages start with the object path: keep it as data.object.
[[noreturn]] void rejected(const std::string &msg, std::string object = "")
{
	if (object.empty()) {
		auto c = msg.find(": ");
		if (c != std::string::npos)
			object = msg.substr(0, c);
	}
	fail(kRejected, msg, object.empty() ? json(nullptr) : json{{"object", object}});
}

[[noreturn]] void conflict(const std::string &path) { rejected(path + ": already exists", path); }

template <class T>
T read(Result<T> r)
{
	if (!r)
		rejected(r.error());
	return std::move(*r);
}

// The named params of one method: unknown names and wrong types are
// invalid-params errors naming the param.
class Params {
public:
	Params(const json &p, std::initializer_list<const char *> allowed) : p_(p)
	{
		for (const auto &[k, v] : p_.items())
			// [&key = k]: clang 14 (scripts/fuzz) cannot capture a structured binding.
			if (std::none_of(allowed.begin(), allowed.end(), [&key = k](const char *a) { return key == a; }))
				fail(kInvalidParams, "invalid params: unknown parameter '" + k + "'", json{{"param", k}});
	}

	bool has(const char *k) const
	{
		auto it = p_.find(k);
		return it != p_.end() && !it->is_null();
	}

	std::optional<std::string> opt_str(const char *k) const
	{
		if (!has(k))
			return std::nullopt;
		const json &v = p_[k];
		if (!v.is_string())
			invalid(k, "must be a string");
		return v.get<std::string>();
	}

	std::string str(const char *k) const
	{
		auto v = opt_str(k);
		if (!v || v->empty())
			invalid(k, "is required");
		return *v;
	}

	// A list flag: an array of strings, or one string.
	std::optional<std::vector<std::string>> opt_list(const char *k) const
	{
		if (!has(k))
			return std::nullopt;
		const json &v = p_[k];
		if (v.is_string())
			return std::vector<std::string>{v.get<std::string>()};
		if (!v.is_array() || std::any_of(v.begin(), v.end(), [](const json &e) { return !e.is_string(); }))
			invalid(k, "must be an array of strings");
		return v.get<std::vector<std::string>>();
	}

	std::vector<std::string> list(const char *k) const
	{
		auto v = opt_list(k);
		if (!v || v->empty())
			invalid(k, "is required");
		return *v;
	}

	std::optional<int64_t> opt_int(const char *k) const
	{
		if (!has(k))
			return std::nullopt;
		const json &v = p_[k];
		if (!v.is_number_integer() ||
		    (v.is_number_unsigned() && v.get<uint64_t>() > uint64_t(std::numeric_limits<int64_t>::max())))
			invalid(k, "must be an integer");
		return v.get<int64_t>();
	}

	// az takes true/false as words too.
	std::optional<bool> opt_bool(const char *k) const
	{
		if (!has(k))
			return std::nullopt;
		const json &v = p_[k];
		if (v.is_boolean())
			return v.get<bool>();
		if (v.is_string() && iequals(v.get<std::string>(), "true"))
			return true;
		if (v.is_string() && iequals(v.get<std::string>(), "false"))
			return false;
		invalid(k, "must be true or false");
	}

	std::optional<json> opt_object(const char *k) const
	{
		if (!has(k))
			return std::nullopt;
		if (!p_[k].is_object())
			invalid(k, "must be a JSON object");
		return p_[k];
	}

private:
	const json &p_;
};

std::string vnet_path(const std::string &v) { return "virtualNetworks/" + v; }
std::string subnet_path(const std::string &v, const std::string &s) { return vnet_path(v) + "/subnets/" + s; }
std::string nsg_path(const std::string &n) { return "networkSecurityGroups/" + n; }
std::string rule_path(const std::string &n, const std::string &r) { return nsg_path(n) + "/securityRules/" + r; }
std::string nic_path(const std::string &n) { return "networkInterfaces/" + n; }
std::string pe_path(const std::string &n) { return "privateEndpoints/" + n; }
std::string server_path(const std::string &n) { return "mysqlServers/" + n; }
std::string fw_path(const std::string &s, const std::string &r) { return server_path(s) + "/firewallRules/" + r; }
std::string vnr_path(const std::string &s, const std::string &r) { return server_path(s) + "/virtualNetworkRules/" + r; }
std::string pec_path(const std::string &s, const std::string &c)
{
	return server_path(s) + "/privateEndpointConnections/" + c;
}

template <class V>
auto find_named(V &items, const std::string &name)
{
	return std::find_if(items.begin(), items.end(), [&](const auto &x) { return iequals(x.name, name); });
}

// The element named `name` of `items`, else not-found on `path`.
template <class V>
auto &named(V &items, const std::string &name, const std::string &path)
{
	auto it = find_named(items, name);
	if (it == items.end())
		not_found(path);
	return *it;
}

template <class V>
void erase_named(V &items, const std::string &name, const std::string &path)
{
	auto it = find_named(items, name);
	if (it == items.end())
		not_found(path);
	items.erase(it);
}

// A subnet flag: a subnet id or <vnet>/<subnet> as is, else with --vnet-name.
std::string subnet_ref(const Params &p, const char *key = "subnet")
{
	std::string sn = p.str(key);
	if (sn.find('/') != std::string::npos) {
		// An id names its VNet: a --vnet-name that says another is a mistake.
		auto v = p.opt_str("vnetName");
		if (auto r = parse_subnet_ref(sn); v && r && !iequals(r->first, *v))
			invalid("vnetName", "'" + *v + "' is not the VNet of subnet '" + sn + "'");
		return sn;
	}
	return p.str("vnetName") + "/" + sn;
}

// "IP", "IP:PORT", "IP:PORT:WEIGHT", "[v6]:PORT[:WEIGHT]" -> a backends[] entry.
json parse_backend(const std::string &t)
{
	std::string addr = t, rest;
	bool colon = false; // after the address: a port follows ("10.0.0.1:" names none)
	if (!t.empty() && t[0] == '[') {
		auto close = t.find(']');
		if (close == std::string::npos || (close + 1 < t.size() && t[close + 1] != ':'))
			invalid("backend", "'" + t + "' is not IP[:PORT[:WEIGHT]]");
		addr = t.substr(1, close - 1);
		colon = close + 1 < t.size();
		rest = colon ? t.substr(close + 2) : "";
	} else if (Addr::parse(t)) { // a bare address, "fd00::7" too
	} else if (std::count(t.begin(), t.end(), ':') <= 2) { // more colons: a bare IPv6 address
		auto c = t.find(':');
		if (c != std::string::npos) {
			colon = true;
			addr = t.substr(0, c);
			rest = t.substr(c + 1);
		}
	}
	json b{{"address", addr}};
	auto num = [&](const std::string &s, const char *what) {
		int v = 0;
		auto [q, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
		if (s.empty() || ec != std::errc() || q != s.data() + s.size())
			invalid("backend", "'" + t + "': " + what + " '" + s + "' is not a number");
		return v;
	};
	if (colon) { // as the state file's reader (arm_json.cpp): an empty port is refused
		auto c = rest.find(':');
		b["port"] = num(rest.substr(0, c), "port");
		if (c != std::string::npos)
			b["weight"] = num(rest.substr(c + 1), "weight");
	}
	return b;
}

// az writes one value to the singular field and several to the plural one.
void set_pair(json &j, const char *one, const char *many, const std::vector<std::string> &v)
{
	j[one] = v.size() == 1 ? json(v[0]) : json(nullptr);
	j[many] = v.size() == 1 ? json::array() : json(v);
}

const char *ct_state_name(lg_ct_state s)
{
	switch (s) {
	case LG_CT_NEW:
		return "new";
	case LG_CT_ESTABLISHED:
		return "established";
	case LG_CT_CLOSING:
		return "closing";
	case LG_CT_CLOSED:
		return "closed";
	}
	return "unknown";
}

const char *dest_kind_name(lg_dest_kind k)
{
	switch (k) {
	case LG_DEST_ROUTED:
		return "routed";
	case LG_DEST_PRIVATE_ENDPOINT:
		return "private-endpoint";
	case LG_DEST_PUBLIC_ENDPOINT:
		return "public-endpoint";
	}
	return "unknown";
}

} // namespace

struct Service::Impl {
	Service &s;
	const State &st() const { return s.state_; }

	// The single path of every change: copy, mutate, fill defaults, validate
	// (try_change), commit to the dataplanes and the state file, adopt.
	// `deleting` names the object a delete removes, for a clearer refusal.
	template <class F>
	void change(F &&mutate, const std::string &deleting = "")
	{
		State next = s.state_;
		Status v = try_change(next, [&](State &x) { mutate(x); });
		if (!v) {
			if (!deleting.empty())
				rejected(deleting + " cannot be deleted: " + v.error(), deleting);
			rejected(v.error());
		}
		// A request that changes nothing (an apply of the same desired
		// state, approving an approved connection) is answered without a
		// generation: the dataplanes and their flows' re-checks stay put.
		// Not after a failed commit: then it is how the operator puts the
		// dataplanes back on the state the agent holds.
		if (next == s.state_ && !s.unsure_)
			return;
		Result<uint64_t> g = s.commit_ ? s.commit_(next) : Result<uint64_t>(s.generation_ + 1);
		s.unsure_ = !g;
		if (!g)
			fail(kCommitFailed, "commit failed: " + g.error());
		// The reference evaluator (explain's trace) catches up when asked.
		s.evaluator_stale_ = true;
		s.state_ = std::move(next);
		s.generation_ = *g;
	}

	// ---- VNets and subnets ----

	json vnet_create(const json &params)
	{
		Params p(params, {"name", "addressPrefixes", "vni", "subnetName", "subnetPrefixes"});
		std::string name = p.str("name");
		json j{{"name", name},
		       {"addressSpace",
			{{"addressPrefixes", p.opt_list("addressPrefixes").value_or(std::vector<std::string>{"10.0.0.0/16"})}}}};
		if (auto vni = p.opt_int("vni"))
			j["vni"] = *vni;
		// As az: a subnet's prefixes without its name would be dropped unseen.
		if (p.has("subnetPrefixes") && !p.has("subnetName"))
			invalid("subnetPrefixes", "given without subnetName");
		if (auto sn = p.opt_str("subnetName"))
			j["subnets"] = json::array(
				{json{{"name", *sn},
				      {"addressPrefixes",
				       p.opt_list("subnetPrefixes").value_or(std::vector<std::string>{"10.0.0.0/24"})}}});
		VirtualNetwork v = read(vnet_from_json(j));
		change([&](State &x) {
			if (x.vnet(name))
				conflict(vnet_path(name));
			x.virtualNetworks.push_back(v);
		});
		return json{{"newVNet", vnet_to_json(*st().vnet(name))}};
	}
	json vnet_delete(const json &params)
	{
		Params p(params, {"name"});
		std::string name = p.str("name");
		change([&](State &x) { erase_named(x.virtualNetworks, name, vnet_path(name)); }, vnet_path(name));
		return nullptr;
	}
	json vnet_show(const json &params)
	{
		Params p(params, {"name"});
		std::string name = p.str("name");
		return vnet_to_json(named(s.state_.virtualNetworks, name, vnet_path(name)));
	}
	json vnet_list(const json &params)
	{
		Params p(params, {});
		json out = json::array();
		for (const auto &v : st().virtualNetworks)
			out.push_back(vnet_to_json(v));
		return out;
	}

	json subnet_create(const json &params)
	{
		Params p(params, {"vnetName", "name", "addressPrefixes", "networkSecurityGroup", "serviceEndpoints",
				  "privateEndpointNetworkPolicies"});
		std::string vn = p.str("vnetName"), name = p.str("name");
		named(s.state_.virtualNetworks, vn, vnet_path(vn));
		json j{{"name", name}, {"addressPrefixes", p.list("addressPrefixes")}};
		patch_subnet(p, j);
		Subnet sn = read(subnet_from_json(j, vn));
		change([&](State &x) {
			VirtualNetwork *v = x.vnet(vn);
			if (v->subnet(name))
				conflict(subnet_path(vn, name));
			v->subnets.push_back(sn);
		});
		return subnet_to_json(*st().vnet(vn)->subnet(name), vn);
	}
	static void patch_subnet(const Params &p, json &j)
	{
		if (auto n = p.opt_str("networkSecurityGroup"))
			j["networkSecurityGroup"] = n->empty() ? json(nullptr) : json(*n);
		if (auto eps = p.opt_list("serviceEndpoints")) {
			std::erase(*eps, std::string()); // `--service-endpoints ""` clears
			j["serviceEndpoints"] = *eps;
		}
		if (auto pol = p.opt_str("privateEndpointNetworkPolicies"))
			j["privateEndpointNetworkPolicies"] = *pol;
	}
	json subnet_update(const json &params)
	{
		Params p(params, {"vnetName", "name", "addressPrefixes", "networkSecurityGroup", "serviceEndpoints",
				  "privateEndpointNetworkPolicies"});
		std::string vn = p.str("vnetName"), name = p.str("name");
		auto &v = named(s.state_.virtualNetworks, vn, vnet_path(vn));
		json j = subnet_to_json(named(v.subnets, name, subnet_path(vn, name)), vn);
		if (auto a = p.opt_list("addressPrefixes")) {
			j.erase("addressPrefix");
			j["addressPrefixes"] = *a;
		}
		patch_subnet(p, j);
		Subnet sn = read(subnet_from_json(j, vn));
		change([&](State &x) { *x.vnet(vn)->subnet(name) = sn; });
		return subnet_to_json(*st().vnet(vn)->subnet(name), vn);
	}
	json subnet_delete(const json &params)
	{
		Params p(params, {"vnetName", "name"});
		std::string vn = p.str("vnetName"), name = p.str("name");
		named(s.state_.virtualNetworks, vn, vnet_path(vn));
		change([&](State &x) { erase_named(x.vnet(vn)->subnets, name, subnet_path(vn, name)); },
		       subnet_path(vn, name));
		return nullptr;
	}
	json subnet_show(const json &params)
	{
		Params p(params, {"vnetName", "name"});
		std::string vn = p.str("vnetName"), name = p.str("name");
		auto &v = named(s.state_.virtualNetworks, vn, vnet_path(vn));
		return subnet_to_json(named(v.subnets, name, subnet_path(vn, name)), vn);
	}
	json subnet_list(const json &params)
	{
		Params p(params, {"vnetName"});
		std::string vn = p.str("vnetName");
		json out = json::array();
		for (const auto &sn : named(s.state_.virtualNetworks, vn, vnet_path(vn)).subnets)
			out.push_back(subnet_to_json(sn, vn));
		return out;
	}

	// ---- NICs ----

	json nic_create(const json &params)
	{
		Params p(params, {"name", "vnetName", "subnet", "privateIpAddress", "networkSecurityGroup"});
		std::string name = p.str("name");
		json j{{"name", name}, {"subnet", subnet_ref(p)}, {"privateIPAddress", p.str("privateIpAddress")}};
		if (auto n = p.opt_str("networkSecurityGroup"); n && !n->empty())
			j["networkSecurityGroup"] = *n;
		NetworkInterface n = read(nic_from_json(j));
		change([&](State &x) {
			if (x.nic(name))
				conflict(nic_path(name));
			x.networkInterfaces.push_back(n);
		});
		return json{{"NewNIC", nic_to_json(*st().nic(name))}};
	}
	json nic_delete(const json &params)
	{
		Params p(params, {"name"});
		std::string name = p.str("name");
		change([&](State &x) { erase_named(x.networkInterfaces, name, nic_path(name)); }, nic_path(name));
		return nullptr;
	}
	json nic_show(const json &params)
	{
		Params p(params, {"name"});
		std::string name = p.str("name");
		return nic_to_json(named(s.state_.networkInterfaces, name, nic_path(name)));
	}
	json nic_list(const json &params)
	{
		Params p(params, {});
		json out = json::array();
		for (const auto &n : st().networkInterfaces)
			out.push_back(nic_to_json(n));
		return out;
	}

	// ---- NSGs and rules ----

	json nsg_create(const json &params)
	{
		Params p(params, {"name", "flushConnection"});
		std::string name = p.str("name");
		json j{{"name", name}, {"flushConnection", p.opt_bool("flushConnection").value_or(false)}};
		NetworkSecurityGroup n = read(nsg_from_json(j));
		change([&](State &x) {
			if (x.nsg(name))
				conflict(nsg_path(name));
			x.networkSecurityGroups.push_back(n);
		});
		return json{{"NewNSG", nsg_to_json(*st().nsg(name), &st())}};
	}
	json nsg_update(const json &params)
	{
		Params p(params, {"name", "flushConnection"});
		std::string name = p.str("name");
		named(s.state_.networkSecurityGroups, name, nsg_path(name));
		auto flush = p.opt_bool("flushConnection");
		change([&](State &x) {
			if (flush)
				x.nsg(name)->flushConnection = *flush;
		});
		return nsg_to_json(*st().nsg(name), &st());
	}
	json nsg_delete(const json &params)
	{
		Params p(params, {"name"});
		std::string name = p.str("name");
		change([&](State &x) { erase_named(x.networkSecurityGroups, name, nsg_path(name)); }, nsg_path(name));
		return nullptr;
	}
	json nsg_show(const json &params)
	{
		Params p(params, {"name"});
		std::string name = p.str("name");
		return nsg_to_json(named(s.state_.networkSecurityGroups, name, nsg_path(name)), &st());
	}
	json nsg_list(const json &params)
	{
		Params p(params, {});
		json out = json::array();
		for (const auto &n : st().networkSecurityGroups)
			out.push_back(nsg_to_json(n, &st()));
		return out;
	}

	static constexpr std::initializer_list<const char *> kRuleParams = {
		"nsgName",		   "name",		"priority",		   "direction",
		"access",		   "protocol",		"sourceAddressPrefixes",   "sourcePortRanges",
		"destinationAddressPrefixes", "destinationPortRanges", "description"};

	// An empty list, or an empty entry, would read as '*' (model.cpp): a rule
	// wider than asked for. az names every prefix and range, or '*'.
	static const std::vector<std::string> &endpoints(const char *key, const std::vector<std::string> &v)
	{
		if (v.empty() || std::any_of(v.begin(), v.end(), [](const std::string &x) { return x.empty(); }))
			invalid(key, "must name at least one prefix or range, and no empty one ('*' for any)");
		return v;
	}
	static void patch_rule(const Params &p, json &j)
	{
		if (auto v = p.opt_int("priority"))
			j["priority"] = *v;
		for (const char *k : {"direction", "access", "protocol", "description"})
			if (auto v = p.opt_str(k))
				j[k] = *v;
		static constexpr std::pair<const char *, const char *> kLists[] = {
			{"sourceAddressPrefix", "sourceAddressPrefixes"},
			{"sourcePortRange", "sourcePortRanges"},
			{"destinationAddressPrefix", "destinationAddressPrefixes"},
			{"destinationPortRange", "destinationPortRanges"}};
		for (auto [one, many] : kLists)
			if (auto v = p.opt_list(many))
				set_pair(j, one, many, endpoints(many, *v));
	}
	json rule_create(const json &params)
	{
		Params p(params, kRuleParams);
		std::string nsg = p.str("nsgName"), name = p.str("name");
		if (!p.has("priority"))
			invalid("priority", "is required");
		named(s.state_.networkSecurityGroups, nsg, nsg_path(nsg));
		// az's defaults: Inbound, Allow, *, from * to * port 80.
		json j{{"name", name}, {"direction", "Inbound"}, {"access", "Allow"}, {"protocol", "*"}};
		set_pair(j, "sourceAddressPrefix", "sourceAddressPrefixes", {"*"});
		set_pair(j, "sourcePortRange", "sourcePortRanges", {"*"});
		set_pair(j, "destinationAddressPrefix", "destinationAddressPrefixes", {"*"});
		set_pair(j, "destinationPortRange", "destinationPortRanges", {"80"});
		patch_rule(p, j);
		SecurityRule r = read(security_rule_from_json(j, nsg));
		change([&](State &x) {
			auto &rules = x.nsg(nsg)->securityRules;
			if (find_named(rules, name) != rules.end())
				conflict(rule_path(nsg, name));
			rules.push_back(r);
		});
		return security_rule_to_json(*find_named(st().nsg(nsg)->securityRules, name), nsg);
	}
	// show finds a default rule by name, so update and delete do not call
	// it missing: they refuse it (SPEC §2: not deletable).
	static void refuse_default(const std::string &nsg, const std::string &name)
	{
		for (const auto &r : default_security_rules())
			if (iequals(r.name, name))
				rejected(nsg_path(nsg) + "/defaultSecurityRules/" + r.name +
						 ": a default rule cannot be changed or deleted; a rule with a lower "
						 "priority number overrides it",
					 nsg_path(nsg) + "/defaultSecurityRules/" + r.name);
	}
	json rule_update(const json &params)
	{
		Params p(params, kRuleParams);
		std::string nsg = p.str("nsgName"), name = p.str("name");
		auto &n = named(s.state_.networkSecurityGroups, nsg, nsg_path(nsg));
		if (find_named(n.securityRules, name) == n.securityRules.end())
			refuse_default(nsg, name);
		json j = security_rule_to_json(named(n.securityRules, name, rule_path(nsg, name)), nsg);
		patch_rule(p, j);
		SecurityRule r = read(security_rule_from_json(j, nsg));
		change([&](State &x) { *find_named(x.nsg(nsg)->securityRules, name) = r; });
		return security_rule_to_json(*find_named(st().nsg(nsg)->securityRules, name), nsg);
	}
	json rule_delete(const json &params)
	{
		Params p(params, {"nsgName", "name"});
		std::string nsg = p.str("nsgName"), name = p.str("name");
		auto &n = named(s.state_.networkSecurityGroups, nsg, nsg_path(nsg));
		if (find_named(n.securityRules, name) == n.securityRules.end())
			refuse_default(nsg, name);
		change([&](State &x) { erase_named(x.nsg(nsg)->securityRules, name, rule_path(nsg, name)); },
		       rule_path(nsg, name));
		return nullptr;
	}
	json rule_show(const json &params)
	{
		Params p(params, {"nsgName", "name"});
		std::string nsg = p.str("nsgName"), name = p.str("name");
		auto &n = named(s.state_.networkSecurityGroups, nsg, nsg_path(nsg));
		if (auto it = find_named(n.securityRules, name); it != n.securityRules.end())
			return security_rule_to_json(*it, nsg);
		// az shows a default rule by name too.
		for (const auto &r : default_security_rules())
			if (iequals(r.name, name))
				return security_rule_to_json(r, nsg, true);
		not_found(rule_path(nsg, name));
	}
	json rule_list(const json &params)
	{
		Params p(params, {"nsgName", "includeDefault"});
		std::string nsg = p.str("nsgName");
		auto &n = named(s.state_.networkSecurityGroups, nsg, nsg_path(nsg));
		json out = json::array();
		for (const auto &r : n.securityRules)
			out.push_back(security_rule_to_json(r, nsg));
		if (p.opt_bool("includeDefault").value_or(false))
			for (const auto &r : default_security_rules())
				out.push_back(security_rule_to_json(r, nsg, true));
		return out;
	}

	// ---- service tags, apply, export ----

	// An inline object, or a file the agent reads (for documents over the
	// message cap, e.g. the real ServiceTags_Public.json).
	static json document(const Params &p, const char *inline_key)
	{
		auto o = p.opt_object(inline_key);
		auto f = p.opt_str("file");
		if (o && f) // which one was meant is not ours to guess
			invalid("file", std::string("and ") + inline_key + " are exclusive: give one");
		if (o)
			return *o;
		if (!f)
			invalid(inline_key, "is required (or file)");
		if (f->empty() || (*f)[0] != '/')
			invalid("file", "must be an absolute path");
		return read(read_json_file(*f)); // read once: what is checked is what is parsed
	}

	json service_tag_load(const json &params)
	{
		Params p(params, {"serviceTags", "file"});
		ServiceTags t = read(service_tags_from_json(document(p, "serviceTags")));
		change([&](State &x) { x.serviceTags = t; });
		return json{{"changeNumber", st().serviceTags.changeNumber},
			    {"cloud", st().serviceTags.cloud},
			    {"count", st().serviceTags.values.size()}};
	}

	json apply(const json &params)
	{
		Params p(params, {"state", "file"});
		State next = read(state_from_json(document(p, "state")));
		change([&](State &x) { x = next; });
		return state_to_json(st());
	}

	json export_state(const json &params)
	{
		Params p(params, {});
		return state_to_json(st());
	}

	// ---- MySQL servers and their rules ----

	static void patch_server(const Params &p, json &j)
	{
		if (auto ip = p.opt_str("publicIp"))
			j["publicIp"] = *ip;
		if (auto a = p.opt_str("publicNetworkAccess"))
			j["publicNetworkAccess"] = *a;
		if (auto bs = p.opt_list("backend")) {
			j["backends"] = json::array();
			for (const auto &b : *bs)
				if (!b.empty())
					j["backends"].push_back(parse_backend(b));
		}
	}
	json server_create(const json &params)
	{
		Params p(params, {"name", "publicIp", "backend", "publicNetworkAccess"});
		std::string name = p.str("name");
		json j{{"name", name}, {"publicIp", p.str("publicIp")}};
		patch_server(p, j);
		MySqlServer m = read(server_from_json(j));
		change([&](State &x) {
			if (x.server(name))
				conflict(server_path(name));
			x.servers.push_back(m);
		});
		return server_to_json(*st().server(name), st());
	}
	json server_update(const json &params)
	{
		Params p(params, {"name", "publicIp", "backend", "publicNetworkAccess"});
		std::string name = p.str("name");
		json j = server_to_json(named(s.state_.servers, name, server_path(name)), st());
		patch_server(p, j);
		MySqlServer m = read(server_from_json(j));
		change([&](State &x) { *x.server(name) = m; });
		return server_to_json(*st().server(name), st());
	}
	json server_delete(const json &params)
	{
		Params p(params, {"name"});
		std::string name = p.str("name");
		change([&](State &x) { erase_named(x.servers, name, server_path(name)); }, server_path(name));
		return nullptr;
	}
	json server_show(const json &params)
	{
		Params p(params, {"name"});
		std::string name = p.str("name");
		return server_to_json(named(s.state_.servers, name, server_path(name)), st());
	}
	json server_list(const json &params)
	{
		Params p(params, {});
		json out = json::array();
		for (const auto &m : st().servers)
			out.push_back(server_to_json(m, st()));
		return out;
	}

	json fw_create(const json &params)
	{
		Params p(params, {"serverName", "name", "startIpAddress", "endIpAddress"});
		std::string sv = p.str("serverName"), name = p.str("name");
		named(s.state_.servers, sv, server_path(sv));
		json j{{"name", name}, {"startIpAddress", p.str("startIpAddress")}, {"endIpAddress", p.str("endIpAddress")}};
		FirewallRule r = read(firewall_rule_from_json(j, sv));
		change([&](State &x) {
			auto &rules = x.server(sv)->firewallRules;
			if (find_named(rules, name) != rules.end())
				conflict(fw_path(sv, name));
			rules.push_back(r);
		});
		return firewall_rule_to_json(*find_named(st().server(sv)->firewallRules, name), sv);
	}
	json fw_update(const json &params)
	{
		Params p(params, {"serverName", "name", "startIpAddress", "endIpAddress"});
		std::string sv = p.str("serverName"), name = p.str("name");
		auto &m = named(s.state_.servers, sv, server_path(sv));
		json j = firewall_rule_to_json(named(m.firewallRules, name, fw_path(sv, name)), sv);
		for (const char *k : {"startIpAddress", "endIpAddress"})
			if (auto v = p.opt_str(k))
				j[k] = *v;
		FirewallRule r = read(firewall_rule_from_json(j, sv));
		change([&](State &x) { *find_named(x.server(sv)->firewallRules, name) = r; });
		return firewall_rule_to_json(*find_named(st().server(sv)->firewallRules, name), sv);
	}
	json fw_delete(const json &params)
	{
		Params p(params, {"serverName", "name"});
		std::string sv = p.str("serverName"), name = p.str("name");
		named(s.state_.servers, sv, server_path(sv));
		change([&](State &x) { erase_named(x.server(sv)->firewallRules, name, fw_path(sv, name)); },
		       fw_path(sv, name));
		return nullptr;
	}
	json fw_show(const json &params)
	{
		Params p(params, {"serverName", "name"});
		std::string sv = p.str("serverName"), name = p.str("name");
		auto &m = named(s.state_.servers, sv, server_path(sv));
		return firewall_rule_to_json(named(m.firewallRules, name, fw_path(sv, name)), sv);
	}
	json fw_list(const json &params)
	{
		Params p(params, {"serverName"});
		std::string sv = p.str("serverName");
		json out = json::array();
		for (const auto &r : named(s.state_.servers, sv, server_path(sv)).firewallRules)
			out.push_back(firewall_rule_to_json(r, sv));
		return out;
	}

	json vnr_create(const json &params)
	{
		Params p(params, {"serverName", "name", "vnetName", "subnet"});
		std::string sv = p.str("serverName"), name = p.str("name");
		named(s.state_.servers, sv, server_path(sv));
		json j{{"name", name}, {"virtualNetworkSubnetId", subnet_ref(p)}};
		VirtualNetworkRule r = read(vnet_rule_from_json(j, sv));
		change([&](State &x) {
			auto &rules = x.server(sv)->virtualNetworkRules;
			if (find_named(rules, name) != rules.end())
				conflict(vnr_path(sv, name));
			rules.push_back(r);
		});
		return vnet_rule_to_json(*find_named(st().server(sv)->virtualNetworkRules, name), sv);
	}
	json vnr_delete(const json &params)
	{
		Params p(params, {"serverName", "name"});
		std::string sv = p.str("serverName"), name = p.str("name");
		named(s.state_.servers, sv, server_path(sv));
		change([&](State &x) { erase_named(x.server(sv)->virtualNetworkRules, name, vnr_path(sv, name)); },
		       vnr_path(sv, name));
		return nullptr;
	}
	json vnr_show(const json &params)
	{
		Params p(params, {"serverName", "name"});
		std::string sv = p.str("serverName"), name = p.str("name");
		auto &m = named(s.state_.servers, sv, server_path(sv));
		return vnet_rule_to_json(named(m.virtualNetworkRules, name, vnr_path(sv, name)), sv);
	}
	json vnr_list(const json &params)
	{
		Params p(params, {"serverName"});
		std::string sv = p.str("serverName");
		json out = json::array();
		for (const auto &r : named(s.state_.servers, sv, server_path(sv)).virtualNetworkRules)
			out.push_back(vnet_rule_to_json(r, sv));
		return out;
	}

	// ---- private endpoints and their connections ----

	json pe_create(const json &params)
	{
		Params p(params, {"name", "vnetName", "subnet", "privateIpAddress", "privateConnectionResourceId", "groupId",
				  "manualRequest", "connectionName", "requestMessage"});
		std::string name = p.str("name");
		bool manual = p.opt_bool("manualRequest").value_or(false);
		json c{{"privateLinkServiceId", p.str("privateConnectionResourceId")}, {"groupIds", {p.str("groupId")}}};
		if (auto n = p.opt_str("connectionName"))
			c["name"] = *n;
		if (auto m = p.opt_str("requestMessage"))
			c["requestMessage"] = *m;
		json j{{"name", name}, {"subnet", subnet_ref(p)}, {"privateIPAddress", p.str("privateIpAddress")}};
		j[manual ? "manualPrivateLinkServiceConnections" : "privateLinkServiceConnections"] = json::array({c});
		PrivateEndpoint pe = read(private_endpoint_from_json(j));
		change([&](State &x) {
			if (x.private_endpoint(name))
				conflict(pe_path(name));
			x.privateEndpoints.push_back(pe);
		});
		return private_endpoint_to_json(*st().private_endpoint(name), &st());
	}
	json pe_delete(const json &params)
	{
		Params p(params, {"name"});
		std::string name = p.str("name");
		change([&](State &x) { erase_named(x.privateEndpoints, name, pe_path(name)); }, pe_path(name));
		return nullptr;
	}
	json pe_show(const json &params)
	{
		Params p(params, {"name"});
		std::string name = p.str("name");
		return private_endpoint_to_json(named(s.state_.privateEndpoints, name, pe_path(name)), &st());
	}
	json pe_list(const json &params)
	{
		Params p(params, {});
		json out = json::array();
		for (const auto &pe : st().privateEndpoints)
			out.push_back(private_endpoint_to_json(pe, &st()));
		return out;
	}

	// The endpoint holding connection `name` of server `sv`; the endpoint's
	// own name is accepted too. Deleted connections are not found.
	static PrivateEndpoint &pec(State &x, const std::string &sv, const std::string &name)
	{
		const std::string server = named(x.servers, sv, server_path(sv)).name;
		for (int pass = 0; pass < 2; pass++)
			for (auto &pe : x.privateEndpoints)
				if (pe.server == server && pe.connectionPresent && iequals(pass ? pe.name : pe.connectionName, name))
					return pe;
		not_found(pec_path(sv, name));
	}
	json pec_set(const json &params, const char *status)
	{
		Params p(params, {"serverName", "name", "description"});
		std::string sv = p.str("serverName"), name = p.str("name");
		std::string pe_name = pec(s.state_, sv, name).name;
		std::string desc = p.opt_str("description").value_or("");
		change([&](State &x) {
			PrivateEndpoint &pe = *x.private_endpoint(pe_name);
			pe.connectionState.status = status;
			pe.connectionState.description = desc;
			pe.connectionState.actionsRequired = "None";
		});
		return pec_to_json(*st().private_endpoint(pe_name));
	}
	json pec_approve(const json &params) { return pec_set(params, "Approved"); }
	json pec_reject(const json &params) { return pec_set(params, "Rejected"); }
	json pec_delete(const json &params)
	{
		Params p(params, {"serverName", "name"});
		std::string sv = p.str("serverName"), name = p.str("name");
		std::string pe_name = pec(s.state_, sv, name).name;
		// SPEC §2: the endpoint stays, Disconnected.
		change([&](State &x) {
			PrivateEndpoint &pe = *x.private_endpoint(pe_name);
			pe.connectionPresent = false;
			pe.connectionState.status = "Disconnected";
			pe.connectionState.actionsRequired = "None";
		});
		return nullptr;
	}
	json pec_show(const json &params)
	{
		Params p(params, {"serverName", "name"});
		return pec_to_json(pec(s.state_, p.str("serverName"), p.str("name")));
	}
	json pec_list(const json &params)
	{
		Params p(params, {"serverName"});
		std::string sv = p.str("serverName");
		const std::string server = named(s.state_.servers, sv, server_path(sv)).name;
		json out = json::array();
		for (const auto &pe : st().privateEndpoints)
			if (pe.server == server && pe.connectionPresent)
				out.push_back(pec_to_json(pe));
		return out;
	}

	// ---- explain, stats, flows, status ----

	// The live generation's answer: from its compiled tables (te_decide, what
	// the XDP program runs) when a dataplane is attached; the trace, which the
	// tables do not keep, comes from the reference evaluator.
	Decision decide(Tuple t) const
	{
		const CompiledTables *ct = s.dataplane_ ? s.dataplane_->live_tables() : nullptr;
		bool host_routes = ct && !ct->ifaces.empty();
		Dataplane::Route rt = host_routes ? s.dataplane_->route(t.dst) : Dataplane::Route{};
		// Multicast, broadcast and the host's own addresses go to the host
		// before any policy (lg_process): not a policy decision.
		if (ct && (t.dst.is_multicast_or_broadcast() || rt.kind == Dataplane::Route::local)) {
			Decision h;
			h.generation = s.generation_;
			h.verdict = LG_VERDICT_PASS;
			return h;
		}
		// The destination's subnet and NIC are those of the VNet the packet
		// leaves into, as in the dataplane (peered VNets on their own
		// interfaces): the egress interface's binding.
		uint32_t egress = rt.kind == Dataplane::Route::via ? rt.ifindex : 0;
		uint32_t evni = egress ? te_iface_vni(*ct, egress) : 0;
		if (evni)
			for (const auto &v : st().virtualNetworks)
				if (effective_vni(v) == evni)
					t.egress_vnet = v.name;
		Decision d = s.evaluator().explain(t);
		if (!ct)
			return d;
		TePacket p{};
		p.egress_ifindex = egress;
		if (const VirtualNetwork *v = st().vnet(t.vnet))
			p.vni = effective_vni(*v);
		std::memcpy(p.src, t.src.b.data(), 16);
		std::memcpy(p.dst, t.dst.b.data(), 16);
		p.proto = t.proto;
		p.has_ports = t.proto == kProtoTcp || t.proto == kProtoUdp;
		p.sport = t.sport;
		p.dport = t.dport;
		TeResult r = te_decide(*ct, &p);
		auto name = [](const std::vector<std::string> &v, uint32_t i) { return i < v.size() ? v[i] : std::string(); };
		// A pass (host-bound) or tx answer is not a policy decision: keep it.
		if (d.verdict == LG_VERDICT_PASS || d.verdict == LG_VERDICT_TX)
			return d;
		d.verdict = r.allowed ? LG_VERDICT_FORWARD : LG_VERDICT_DROP;
		d.reason = r.reason;
		d.stage = r.stage;
		std::string rule = name(ct->rule_names, r.counter);
		auto slash = rule.find('/');
		d.nsg = slash == std::string::npos ? "" : rule.substr(0, slash);
		d.rule = slash == std::string::npos ? "" : rule.substr(slash + 1);
		d.private_endpoint = name(ct->pe_names, r.pe);
		d.server = name(ct->server_names, r.server);
		d.backend.clear();
		Dataplane::Route out = rt;
		Addr to = t.dst;
		if (r.backend < ct->backends.size()) {
			const lg_backend &b = ct->backends[r.backend];
			std::memcpy(to.b.data(), b.addr, 16);
			d.backend = host_port(to, ntohs(b.port_be));
			if (r.allowed && host_routes)
				out = s.dataplane_->route(to);
		}
		// bpf_fib_lookup forwards no IPv6 packet from or to a link-local,
		// loopback or multicast address (the kernel's rt6_need_strict).
		auto strict = [loopback = *Addr::parse("::1")](const Addr &a) {
			return !a.is_v4() && (a.is_multicast_or_broadcast() || a.is_link_local() || a == loopback);
		};
		// Allowed, then routed as the program routes (lg_forward): to the
		// backend when translated; no route, or one of the host's own
		// addresses after translation, is dropped no-route.
		if (r.allowed && host_routes && (strict(t.src) || strict(to)))
			out.kind = Dataplane::Route::none;
		// Addresses no dataplane forwards (abi/lg_route.h), with host
		// routes or without.
		if (r.allowed && lg_unroutable(t.src.b.data(), to.b.data(), t.src.is_v4()))
			out.kind = Dataplane::Route::none;
		// Forwarding off where the packet arrives: the lookup answers
		// FWD_DISABLED, dropped as no route.
		if (r.allowed && host_routes && !s.dataplane_->forwards(p.vni, !t.dst.is_v4()))
			out.kind = Dataplane::Route::none;
		if (r.allowed && (out.kind == Dataplane::Route::none || out.kind == Dataplane::Route::local)) {
			d.verdict = LG_VERDICT_DROP;
			d.reason = LG_REASON_NO_ROUTE;
			d.stage = LG_STAGE_FORWARD;
		}
		return d;
	}

	json explain(const json &params)
	{
		Params p(params, {"src", "dst", "protocol", "sport", "dport", "vnetName"});
		auto addr = [&](const char *k) {
			std::string v = p.str(k);
			auto a = Addr::parse(v);
			if (!a)
				invalid(k, "'" + v + "' is not an IP address");
			return *a;
		};
		Tuple t;
		t.src = addr("src");
		t.dst = addr("dst");
		if (t.src.is_v4() != t.dst.is_v4())
			invalid("dst", "src and dst must be of the same address family");
		std::string proto = p.str("protocol");
		if (iequals(proto, "Tcp"))
			t.proto = kProtoTcp;
		else if (iequals(proto, "Udp"))
			t.proto = kProtoUdp;
		else if (iequals(proto, "Icmp"))
			t.proto = t.src.is_v4() ? kProtoIcmp : kProtoIcmp6;
		else if (iequals(proto, "Esp"))
			t.proto = kProtoEsp;
		else if (iequals(proto, "Ah"))
			t.proto = kProtoAh;
		else
			invalid("protocol", "'" + proto + "' must be Tcp, Udp, Icmp, Esp or Ah");
		// A port given to a portless protocol would be ignored, so it is refused;
		// an omitted port of Tcp or Udp is 0.
		bool has_ports = t.proto == kProtoTcp || t.proto == kProtoUdp;
		auto port = [&](const char *k) -> uint16_t {
			auto o = p.opt_int(k);
			if (o && !has_ports)
				invalid(k, "ports apply to Tcp and Udp only");
			auto v = o.value_or(0);
			if (v < 0 || v > 65535)
				invalid(k, std::to_string(v) + " is outside 0-65535");
			return uint16_t(v);
		};
		t.sport = port("sport");
		t.dport = port("dport");
		if (auto v = p.opt_str("vnetName")) {
			named(s.state_.virtualNetworks, *v, vnet_path(*v));
			t.vnet = *v;
		} else {
			t.vnet = vnet_of(t.src);
			if (t.vnet.empty())
				t.vnet = vnet_of(t.dst);
		}
		Decision d = decide(t);
		json trace = json::array();
		for (const auto &ts : d.trace)
			trace.push_back(json{{"stage", stage_name(ts.stage)},
					     {"object", ts.object},
					     {"rule", ts.rule},
					     {"allowed", ts.allowed}});
		auto opt = [](const std::string &v) { return v.empty() ? json(nullptr) : json(v); };
		return json{{"generation", s.generation_},
			    {"vnet", opt(t.vnet)},
			    {"verdict", verdict_name(d.verdict)},
			    {"reason", d.verdict == LG_VERDICT_DROP ? json(reason_name(d.reason)) : json(nullptr)},
			    {"stage", stage_name(d.stage)},
			    {"nsg", opt(d.nsg)},
			    {"rule", opt(d.rule)},
			    {"privateEndpoint", opt(d.private_endpoint)},
			    {"server", opt(d.server)},
			    {"backend", opt(d.backend)},
			    {"trace", trace}};
	}

	// The VNet whose address space holds a, else "" (the packet's VNet when
	// explain is not told).
	std::string vnet_of(const Addr &a) const
	{
		for (const auto &v : st().virtualNetworks)
			for (const auto &pre : v.addressPrefixes)
				if (auto px = Prefix::parse(pre); px && px->contains(a))
					return v.name;
		return "";
	}

	json stats(const json &params)
	{
		Params p(params, {});
		// The dataplane's counters when one is attached, else the evaluator's.
		Counters c;
		uint64_t nflows = 0;
		json dc_dataplanes;
		if (!s.dataplane_) {
			c = s.evaluator().counters();
			nflows = s.evaluator().flow_count();
		} else {
			DataplaneCounters dc = s.dataplane_->counters();
			dc_dataplanes = dc.dataplanes;
			c.reasons = dc.reasons;
			c.rule_hits = dc.rules;
			c.private_endpoints = dc.private_endpoints;
			c.servers = dc.servers;
			nflows = dc.flows;
		}
		json drops = json::object();
		for (int i = 1; i < LG_REASON__COUNT; i++)
			drops[reason_name(lg_reason(i))] = c.reasons[size_t(i)];
		auto get = [](const std::map<std::string, uint64_t> &m, const std::string &k) {
			auto it = m.find(k);
			return it == m.end() ? uint64_t(0) : it->second;
		};
		// Every object of the live state is listed, with 0 until it is hit.
		json rules = json::object();
		for (const auto &n : st().networkSecurityGroups) {
			for (const auto &r : n.securityRules)
				rules[n.name + "/" + r.name] = get(c.rule_hits, n.name + "/" + r.name);
			for (const auto &r : default_security_rules())
				rules[n.name + "/" + r.name] = get(c.rule_hits, n.name + "/" + r.name);
		}
		json pes = json::object(), servers = json::object();
		for (const auto &pe : st().privateEndpoints)
			pes[pe.name] = get(c.private_endpoints, pe.name);
		for (const auto &m : st().servers)
			servers[m.name] = get(c.servers, m.name);
		json out{{"generation", s.generation_},
			    {"forwarded", c.reasons[LG_REASON_NONE]},
			    {"drops", drops},
			    {"nsgRules", rules},
			    {"privateEndpoints", pes},
			    {"servers", servers},
			    {"flows", nflows}};
		if (s.dataplane_)
			out["dataplanes"] = dc_dataplanes;
		return out;
	}

	json flows(const json &params)
	{
		Params p(params, {"top"});
		int64_t top = p.opt_int("top").value_or(kFlowsDefaultTop);
		if (top < 1 || top > kFlowsMaxTop)
			invalid("top", "must be 1 to " + std::to_string(kFlowsMaxTop));
		if (s.dataplane_)
			return s.dataplane_->flows(size_t(top));
		json out = json::array();
		for (const auto &f : s.evaluator().flows()) {
			if (out.size() >= size_t(top))
				break;
			out.push_back(json{{"original", f.orig},
					   {"reply", f.reply},
					   {"state", ct_state_name(f.state)},
					   {"kind", dest_kind_name(f.kind)},
					   {"object", f.object.empty() ? json(nullptr) : json(f.object)},
					   {"backend", f.backend.empty() ? json(nullptr) : json(f.backend)},
					   {"generation", f.generation},
					   {"expiresNs", f.expires_ns}});
		}
		return out;
	}

	json status(const json &params)
	{
		Params p(params, {});
		json out{{"generation", s.generation_},
			    {"virtualNetworks", st().virtualNetworks.size()},
			    {"networkSecurityGroups", st().networkSecurityGroups.size()},
			    {"networkInterfaces", st().networkInterfaces.size()},
			    {"privateEndpoints", st().privateEndpoints.size()},
			    {"mysqlServers", st().servers.size()},
			    {"serviceTags", st().serviceTags.values.size()}};
		if (s.dataplane_)
			out["dataplanes"] = s.dataplane_->describe();
		return out;
	}

	using Method = json (Impl::*)(const json &);
	static const std::map<std::string, Method, std::less<>> &methods()
	{
		static const std::map<std::string, Method, std::less<>> m{
			{"network.vnet.create", &Impl::vnet_create},
			{"network.vnet.delete", &Impl::vnet_delete},
			{"network.vnet.show", &Impl::vnet_show},
			{"network.vnet.list", &Impl::vnet_list},
			{"network.vnet.subnet.create", &Impl::subnet_create},
			{"network.vnet.subnet.update", &Impl::subnet_update},
			{"network.vnet.subnet.delete", &Impl::subnet_delete},
			{"network.vnet.subnet.show", &Impl::subnet_show},
			{"network.vnet.subnet.list", &Impl::subnet_list},
			{"network.nic.create", &Impl::nic_create},
			{"network.nic.delete", &Impl::nic_delete},
			{"network.nic.show", &Impl::nic_show},
			{"network.nic.list", &Impl::nic_list},
			{"network.nsg.create", &Impl::nsg_create},
			{"network.nsg.update", &Impl::nsg_update},
			{"network.nsg.delete", &Impl::nsg_delete},
			{"network.nsg.show", &Impl::nsg_show},
			{"network.nsg.list", &Impl::nsg_list},
			{"network.nsg.rule.create", &Impl::rule_create},
			{"network.nsg.rule.update", &Impl::rule_update},
			{"network.nsg.rule.delete", &Impl::rule_delete},
			{"network.nsg.rule.show", &Impl::rule_show},
			{"network.nsg.rule.list", &Impl::rule_list},
			{"network.service-tag.load", &Impl::service_tag_load},
			{"network.private-endpoint.create", &Impl::pe_create},
			{"network.private-endpoint.delete", &Impl::pe_delete},
			{"network.private-endpoint.show", &Impl::pe_show},
			{"network.private-endpoint.list", &Impl::pe_list},
			{"mysql.server.create", &Impl::server_create},
			{"mysql.server.update", &Impl::server_update},
			{"mysql.server.delete", &Impl::server_delete},
			{"mysql.server.show", &Impl::server_show},
			{"mysql.server.list", &Impl::server_list},
			{"mysql.server.firewall-rule.create", &Impl::fw_create},
			{"mysql.server.firewall-rule.update", &Impl::fw_update},
			{"mysql.server.firewall-rule.delete", &Impl::fw_delete},
			{"mysql.server.firewall-rule.show", &Impl::fw_show},
			{"mysql.server.firewall-rule.list", &Impl::fw_list},
			{"mysql.server.vnet-rule.create", &Impl::vnr_create},
			{"mysql.server.vnet-rule.delete", &Impl::vnr_delete},
			{"mysql.server.vnet-rule.show", &Impl::vnr_show},
			{"mysql.server.vnet-rule.list", &Impl::vnr_list},
			{"mysql.server.private-endpoint-connection.approve", &Impl::pec_approve},
			{"mysql.server.private-endpoint-connection.reject", &Impl::pec_reject},
			{"mysql.server.private-endpoint-connection.delete", &Impl::pec_delete},
			{"mysql.server.private-endpoint-connection.show", &Impl::pec_show},
			{"mysql.server.private-endpoint-connection.list", &Impl::pec_list},
			{"apply", &Impl::apply},
			{"export", &Impl::export_state},
			{"explain", &Impl::explain},
			{"stats", &Impl::stats},
			{"flows", &Impl::flows},
			{"status", &Impl::status},
		};
		return m;
	}
};

Service::Service(State initial, uint64_t generation, CommitHook commit)
	: state_(std::move(initial)), generation_(generation), commit_(std::move(commit)), evaluator_(HostConfig{})
{
	(void)evaluator_.commit(state_);
}

Result<uint64_t> Service::republish()
{
	Result<uint64_t> g = commit_ ? commit_(state_) : Result<uint64_t>(generation_ + 1);
	unsure_ = !g;
	if (g)
		generation_ = *g;
	return g;
}

Evaluator &Service::evaluator()
{
	if (evaluator_stale_) {
		(void)evaluator_.commit(state_); // it accepts what validate accepted
		evaluator_stale_ = false;
	}
	return evaluator_;
}

json Service::handle(const json &req)
{
	json id = nullptr;
	if (!req.is_object())
		return error_response(nullptr, kInvalidRequest,
				      req.is_array() ? "invalid request: batches are not supported, send one object per line"
						     : "invalid request: a request is a JSON object");
	auto it = req.find("id");
	bool notification = it == req.end();
	if (!notification) {
		if (!rpc_id_echoable(*it) && !it->is_null())
			return error_response(nullptr, kInvalidRequest,
					      "invalid request: id must be a string, a number within 64 bits or null");
		id = *it;
	}
	if (auto v = req.find("jsonrpc"); v == req.end() || *v != "2.0")
		return error_response(id, kInvalidRequest, "invalid request: jsonrpc must be \"2.0\"");
	auto m = req.find("method");
	if (m == req.end() || !m->is_string())
		return error_response(id, kInvalidRequest, "invalid request: method must be a string");
	for (const auto &[k, v] : req.items())
		if (k != "jsonrpc" && k != "id" && k != "method" && k != "params")
			return error_response(id, kInvalidRequest, "invalid request: unknown member '" + k + "'");

	json reply;
	const auto &table = Impl::methods();
	auto fn = table.find(m->get_ref<const std::string &>());
	if (fn == table.end()) {
		reply = error_response(id, kMethodNotFound, "method not found: '" + m->get<std::string>() + "'");
	} else {
		static const json kNoParams = json::object();
		auto p = req.find("params");
		const json &params = p == req.end() || p->is_null() ? kNoParams : *p;
		try {
			if (!params.is_object())
				fail(kInvalidParams, "invalid params: params must be an object of named parameters");
			Impl impl{*this};
			json result = (impl.*(fn->second))(params);
			reply = json{{"jsonrpc", "2.0"}, {"id", id}, {"generation", generation_}, {"result", result}};
		} catch (const RpcError &e) {
			reply = error_response(id, e.code, e.message, e.data);
		} catch (const std::exception &e) {
			reply = error_response(id, kInternalError, std::string("internal error: ") + e.what());
		}
	}
	return notification ? json(nullptr) : reply;
}

std::string Service::handle_line(std::string_view line)
{
	// Replies go out as valid UTF-8 even when a request (quoted back in a
	// parse error) or a stored string is not.
	auto dump = [](const json &j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); };
	try {
		if (nesting_depth(line) > kMaxDepth)
			return dump(error_response(nullptr, kInvalidRequest,
						   "invalid request: JSON nested deeper than " + std::to_string(kMaxDepth) +
							   " levels"));
		// nlohmann stops at a NUL byte: what follows would go unread.
		if (line.find('\0') != std::string_view::npos)
			return dump(error_response(nullptr, kParseError, "parse error: a NUL byte in the request"));
		json req;
		try {
			req = parse_json_unique_keys(line);
		} catch (const DuplicateKey &e) {
			return dump(error_response(nullptr, kParseError, std::string("parse error: ") + e.what()));
		} catch (const json::exception &e) { // parse_error, or out_of_range for a number beyond a double
			std::string w = e.what();
			auto close = w.find("] ");
			return dump(error_response(nullptr, kParseError,
						   "parse error: " + (close == std::string::npos ? w : w.substr(close + 2))));
		}
		json reply = handle(req);
		return reply.is_null() ? std::string() : dump(reply);
	} catch (const std::exception &e) {
		// Nothing a client sends may take the agent down.
		return dump(error_response(nullptr, kInternalError, std::string("internal error: ") + e.what()));
	}
}

} // namespace lg::agent
