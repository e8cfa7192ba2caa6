#include "arm_json.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <initializer_list>
#include <limits>
#include <optional>
#include <set>
#include <sstream>
#include <string_view>

namespace lg {

using json = nlohmann::json;

namespace {

// Enum words are accepted in any case and stored canonically; anything else
// is kept as written so the validator can name it.
std::string canon(const std::string &v, std::initializer_list<const char *> words)
{
	for (const char *w : words)
		if (iequals(v, w))
			return w;
	return v;
}

std::string canon_tag(const std::string &v) { return canon(v, {"VirtualNetwork", "Internet", "AzureLoadBalancer"}); }

std::vector<std::string> segments(std::string_view id)
{
	std::vector<std::string> out;
	size_t i = 0;
	while (i <= id.size()) {
		size_t j = id.find('/', i);
		if (j == std::string_view::npos)
			j = id.size();
		if (j > i)
			out.emplace_back(id.substr(i, j - i));
		i = j + 1;
	}
	return out;
}

// The value after a path keyword of an ARM id ("servers" -> server name).
std::string segment_after(const std::string &id, const char *keyword)
{
	auto s = segments(id);
	for (size_t i = 0; i + 1 < s.size(); i++)
		if (iequals(s[i], keyword))
			return s[i + 1];
	return "";
}

json ref_json(const std::string &id) { return json{{"id", id}, {"resourceGroup", kResourceGroup}}; }

json string_or_null(const std::string &s) { return s.empty() ? json(nullptr) : json(s); }

json resource(const std::string &name, const std::string &id, const char *type)
{
	return json{{"name", name},
		    {"id", id},
		    {"type", type},
		    {"resourceGroup", kResourceGroup},
		    {"provisioningState", "Succeeded"}};
}

std::string default_fqdn(const std::string &server) { return server + ".mysql.database.azure.com"; }

// Path of one collection element: "<coll>/<name>", else "<coll>[i]".
std::string elem_path(const std::string &coll, const json &j, size_t i)
{
	if (j.is_object()) {
		auto n = j.find("name");
		if (n != j.end() && n->is_string() && !n->get_ref<const std::string &>().empty())
			return coll + "/" + n->get<std::string>();
		auto id = j.find("id");
		if (id != j.end() && id->is_string() && !ref_name(id->get<std::string>()).empty())
			return coll + "/" + ref_name(id->get<std::string>());
	}
	if (i == std::numeric_limits<size_t>::max())
		return coll + "/(unnamed)";
	return coll + "[" + std::to_string(i) + "]";
}

constexpr size_t kNoIndex = std::numeric_limits<size_t>::max();

// Merges an ARM `properties` envelope into its object.
bool flatten_object(const json &v, json &out, std::string &problem)
{
	if (!v.is_object()) {
		problem = " must be a JSON object";
		return false;
	}
	auto p = v.find("properties");
	if (p == v.end() || p->is_null()) {
		out = v;
		return true;
	}
	if (!p->is_object()) {
		problem = ".properties must be a JSON object";
		return false;
	}
	out = v;
	out.erase("properties");
	// ARM keeps everything but name/id/type in properties; it wins on a clash.
	for (const auto &[k, x] : p->items())
		out[k] = x;
	return true;
}

// Typed field access on one (flattened) JSON object. Absent and null fields
// leave the output untouched; the first type error is kept, with the object
// path and field name, and later errors are ignored.
class Reader {
public:
	Reader(const json &j, std::string path) : j_(j), path_(std::move(path)), err_(&own_) {}
	Reader(const Reader &) = delete;
	Reader &operator=(const Reader &) = delete;

	// A reader for a nested object; its errors go to this reader.
	Reader child(const json &sub, const std::string &field) const
	{
		return Reader(sub, path_, prefix_ + field + ".", err_);
	}

	bool ok() const { return !*err_; }
	const std::string &error() const { return **err_; }
	std::string field(const std::string &key) const { return prefix_ + key; }
	void fail(const std::string &msg)
	{
		if (!*err_)
			*err_ = path_ + ": " + msg;
	}
	void type_error(const std::string &key, const char *what) { fail(field(key) + " must be " + what); }

	const json *get(const char *key) const
	{
		if (!j_.is_object())
			return nullptr;
		auto it = j_.find(key);
		if (it == j_.end() || it->is_null())
			return nullptr;
		return &*it;
	}

	bool str(const char *key, std::string &out)
	{
		const json *v = get(key);
		if (!v)
			return false;
		if (!v->is_string()) {
			type_error(key, "a string");
			return false;
		}
		out = v->get<std::string>();
		return true;
	}

	bool int64(const char *key, int64_t &out)
	{
		const json *v = get(key);
		if (!v)
			return false;
		if (!v->is_number_integer()) {
			type_error(key, "an integer");
			return false;
		}
		if (v->is_number_unsigned() && v->get<uint64_t>() > uint64_t(std::numeric_limits<int64_t>::max())) {
			fail(field(key) + " " + v->dump() + " is out of range");
			return false;
		}
		out = v->get<int64_t>();
		return true;
	}

	bool integer(const char *key, int &out)
	{
		int64_t v = 0;
		if (!int64(key, v))
			return false;
		if (v < std::numeric_limits<int>::min() || v > std::numeric_limits<int>::max()) {
			fail(field(key) + " " + std::to_string(v) + " is out of range");
			return false;
		}
		out = int(v);
		return true;
	}

	bool boolean(const char *key, bool &out)
	{
		const json *v = get(key);
		if (!v)
			return false;
		if (!v->is_boolean()) {
			type_error(key, "true or false");
			return false;
		}
		out = v->get<bool>();
		return true;
	}

	// A port field: a string, or a plain number that is taken as its decimal text.
	bool port(const char *key, std::string &out)
	{
		const json *v = get(key);
		if (!v)
			return false;
		if (v->is_number_integer()) {
			out = v->dump();
			return true;
		}
		if (!v->is_string()) {
			type_error(key, "a string");
			return false;
		}
		out = v->get<std::string>();
		return true;
	}

	bool strings(const char *key, std::vector<std::string> &out, bool numbers_ok = false)
	{
		const json *v = get(key);
		if (!v)
			return false;
		if (!v->is_array()) {
			type_error(key, "an array of strings");
			return false;
		}
		std::vector<std::string> r;
		for (const auto &e : *v) {
			if (e.is_string())
				r.push_back(e.get<std::string>());
			else if (numbers_ok && e.is_number_integer())
				r.push_back(e.dump());
			else {
				type_error(key, "an array of strings");
				return false;
			}
		}
		out = std::move(r);
		return true;
	}

	const json *array(const char *key)
	{
		const json *v = get(key);
		if (v && !v->is_array()) {
			type_error(key, "an array");
			return nullptr;
		}
		return v;
	}

	// A nested object with its `properties` envelope merged in.
	bool object(const char *key, json &out)
	{
		const json *v = get(key);
		if (!v)
			return false;
		return flatten(*v, field(key), out);
	}

	// An element of an array field, flattened.
	bool element(const json &e, const std::string &what, json &out) { return flatten(e, field(what), out); }

	// A reference: an ARM id or name, given as a string or as {"id": ...}.
	bool ref(const char *key, std::string &out)
	{
		const json *v = get(key);
		if (!v)
			return false;
		if (v->is_string()) {
			out = v->get<std::string>();
			return true;
		}
		if (v->is_object()) {
			auto id = v->find("id");
			if (id != v->end() && id->is_string()) {
				out = id->get<std::string>();
				return true;
			}
			if (id == v->end() || id->is_null())
				return false;
		}
		fail(field(key) + " must be an ARM id string or an object with an \"id\" string");
		return false;
	}

	// An id of one resource type (".../<type>/<name>") or a bare name, into
	// name: an id of another type is an error, not its last segment.
	void typed(const std::string &what, const std::string &ref, const char *type, std::string &name)
	{
		if (auto n = typed_ref_name(ref, type))
			name = *n;
		else
			fail(what + ": '" + ref + "' is not a " + type + " id (.../" + type + "/<name>) or a name");
	}

	bool flatten(const json &v, const std::string &what, json &out)
	{
		std::string problem;
		if (!flatten_object(v, out, problem)) {
			fail(what + problem);
			return false;
		}
		return true;
	}

private:
	Reader(const json &j, std::string path, std::string prefix, std::optional<std::string> *err)
		: j_(j), path_(std::move(path)), prefix_(std::move(prefix)), err_(err)
	{
	}

	const json &j_;
	std::string path_;
	std::string prefix_;
	std::optional<std::string> own_;
	std::optional<std::string> *err_;
};

// Flattens the top-level object of one element; returns false with the error set.
bool top(const json &raw, const std::string &path, json &out, std::string &error)
{
	std::string problem;
	if (!flatten_object(raw, out, problem)) {
		error = path + ": " + problem.substr(1);
		return false;
	}
	return true;
}

void read_name(Reader &r, std::string &name)
{
	if (r.get("name")) {
		r.str("name", name);
		return;
	}
	std::string id;
	if (r.str("id", id))
		name = ref_name(id);
}

void read_subnet_ref(Reader &r, const char *key, std::string &vnet, std::string &subnet)
{
	std::string ref;
	if (!r.ref(key, ref))
		return;
	auto p = parse_subnet_ref(ref);
	if (!p) {
		r.fail(r.field(key) + ": " + p.error());
		return;
	}
	vnet = p->first;
	subnet = p->second;
}

// ---- security rules and NSGs ----

Result<SecurityRule> read_rule(const json &raw, const std::string &path)
{
	json j;
	std::string e;
	if (!top(raw, path, j, e))
		return err(e);
	Reader r(j, path);
	SecurityRule x;
	read_name(r, x.name);
	r.integer("priority", x.priority);
	if (r.str("direction", x.direction))
		x.direction = canon(x.direction, {"Inbound", "Outbound"});
	if (r.str("access", x.access))
		x.access = canon(x.access, {"Allow", "Deny"});
	if (r.str("protocol", x.protocol))
		x.protocol = canon(x.protocol, {"Tcp", "Udp", "Icmp", "Esp", "Ah", "*"});
	if (r.str("sourceAddressPrefix", x.sourceAddressPrefix))
		x.sourceAddressPrefix = canon_tag(x.sourceAddressPrefix);
	r.strings("sourceAddressPrefixes", x.sourceAddressPrefixes);
	if (r.str("destinationAddressPrefix", x.destinationAddressPrefix))
		x.destinationAddressPrefix = canon_tag(x.destinationAddressPrefix);
	r.strings("destinationAddressPrefixes", x.destinationAddressPrefixes);
	r.port("sourcePortRange", x.sourcePortRange);
	r.strings("sourcePortRanges", x.sourcePortRanges, true);
	r.port("destinationPortRange", x.destinationPortRange);
	r.strings("destinationPortRanges", x.destinationPortRanges, true);
	r.str("description", x.description);
	// An application security group would silently widen the rule to "*".
	for (const char *asg : {"sourceApplicationSecurityGroups", "destinationApplicationSecurityGroups"}) {
		const json *v = r.get(asg);
		if (v && !(v->is_array() && v->empty()))
			r.fail(std::string(asg) + " are not supported");
	}
	if (!r.ok())
		return err(r.error());
	return x;
}

Result<NetworkSecurityGroup> read_nsg(const json &raw, const std::string &path)
{
	json j;
	std::string e;
	if (!top(raw, path, j, e))
		return err(e);
	Reader r(j, path);
	NetworkSecurityGroup n;
	read_name(r, n.name);
	r.boolean("flushConnection", n.flushConnection);
	if (const json *rules = r.array("securityRules")) {
		for (size_t i = 0; i < rules->size() && r.ok(); i++) {
			auto x = read_rule((*rules)[i], elem_path(path + "/securityRules", (*rules)[i], i));
			if (!x)
				return err(x.error());
			n.securityRules.push_back(std::move(*x));
		}
	}
	if (!r.ok())
		return err(r.error());
	// Never from input: SPEC §2 makes them fixed.
	n.defaultSecurityRules = default_security_rules();
	return n;
}

// ---- VNets, subnets, gateways, NICs ----

Result<Subnet> read_subnet(const json &raw, const std::string &path)
{
	json j;
	std::string e;
	if (!top(raw, path, j, e))
		return err(e);
	Reader r(j, path);
	Subnet s;
	read_name(r, s.name);
	if (!r.str("addressPrefix", s.addressPrefix)) {
		std::vector<std::string> many;
		if (r.strings("addressPrefixes", many)) {
			if (many.size() > 1)
				r.fail("addressPrefixes: a subnet has one address prefix");
			else if (many.size() == 1)
				s.addressPrefix = many[0];
		}
	}
	std::string nsg;
	if (r.ref("networkSecurityGroup", nsg))
		r.typed(r.field("networkSecurityGroup"), nsg, "networkSecurityGroups", s.networkSecurityGroup);
	if (const json *eps = r.array("serviceEndpoints")) {
		for (size_t i = 0; i < eps->size() && r.ok(); i++) {
			const json &ep = (*eps)[i];
			std::string svc;
			if (ep.is_string()) {
				svc = ep.get<std::string>();
			} else {
				json o;
				if (!r.element(ep, "serviceEndpoints[" + std::to_string(i) + "]", o))
					break;
				Reader c = r.child(o, "serviceEndpoints[" + std::to_string(i) + "]");
				c.str("service", svc);
			}
			s.serviceEndpoints.push_back(canon(svc, {"Microsoft.Sql"}));
		}
	}
	if (r.str("privateEndpointNetworkPolicies", s.privateEndpointNetworkPolicies)) {
		// Newer API versions split "Enabled" by policy kind; only the NSG part matters here.
		if (iequals(s.privateEndpointNetworkPolicies, "NetworkSecurityGroupEnabled"))
			s.privateEndpointNetworkPolicies = "Enabled";
		else if (iequals(s.privateEndpointNetworkPolicies, "RouteTableEnabled"))
			s.privateEndpointNetworkPolicies = "Disabled";
		else
			s.privateEndpointNetworkPolicies = canon(s.privateEndpointNetworkPolicies, {"Enabled", "Disabled"});
	}
	if (!r.ok())
		return err(r.error());
	return s;
}

Result<VirtualNetwork> read_vnet(const json &raw, const std::string &path)
{
	json j;
	std::string e;
	if (!top(raw, path, j, e))
		return err(e);
	Reader r(j, path);
	VirtualNetwork v;
	read_name(r, v.name);
	json space;
	if (r.object("addressSpace", space)) {
		Reader c = r.child(space, "addressSpace");
		c.strings("addressPrefixes", v.addressPrefixes);
	}
	if (r.get("vni")) {
		int64_t vni = 0;
		if (r.int64("vni", vni)) {
			if (vni < 0 || vni > int64_t(std::numeric_limits<uint32_t>::max()))
				r.fail("vni " + std::to_string(vni) + " is outside 1-" + std::to_string(0xffffff));
			else
				v.vni = uint32_t(vni);
		}
	}
	if (const json *subs = r.array("subnets")) {
		for (size_t i = 0; i < subs->size() && r.ok(); i++) {
			auto s = read_subnet((*subs)[i], elem_path(path + "/subnets", (*subs)[i], i));
			if (!s)
				return err(s.error());
			v.subnets.push_back(std::move(*s));
		}
	}
	if (const json *peers = r.array("virtualNetworkPeerings")) {
		for (size_t i = 0; i < peers->size() && r.ok(); i++) {
			const json &p = (*peers)[i];
			std::string what = "virtualNetworkPeerings[" + std::to_string(i) + "]";
			if (p.is_string()) {
				r.typed(r.field(what), p.get<std::string>(), "virtualNetworks", v.peerings.emplace_back());
				continue;
			}
			json o;
			if (!r.element(p, what, o))
				break;
			Reader c = r.child(o, what);
			// Without access the peer is no part of this VNet's
			// VirtualNetwork tag (Azure); modelled as a peering, it would
			// be, and AllowVnetInBound would admit it: refused.
			bool access = true;
			if (c.boolean("allowVirtualNetworkAccess", access) && !access)
				c.fail(c.field("allowVirtualNetworkAccess") +
				       " false is not supported (the peer would count as this VNet's VirtualNetwork)");
			std::string remote;
			if (c.ok() && c.ref("remoteVirtualNetwork", remote))
				c.typed(c.field("remoteVirtualNetwork"), remote, "virtualNetworks", v.peerings.emplace_back());
			else if (c.ok())
				c.fail(c.field("remoteVirtualNetwork") + " is required");
		}
	}
	if (!r.ok())
		return err(r.error());
	return v;
}

Result<LocalNetworkGateway> read_lng(const json &raw, const std::string &path)
{
	json j;
	std::string e;
	if (!top(raw, path, j, e))
		return err(e);
	Reader r(j, path);
	LocalNetworkGateway g;
	read_name(r, g.name);
	json space;
	if (r.object("localNetworkAddressSpace", space)) {
		Reader c = r.child(space, "localNetworkAddressSpace");
		c.strings("addressPrefixes", g.addressPrefixes);
	}
	if (const json *vs = r.array("virtualNetworks")) {
		for (size_t i = 0; i < vs->size() && r.ok(); i++) {
			const json &x = (*vs)[i];
			std::string what = "virtualNetworks[" + std::to_string(i) + "]";
			if (x.is_string()) {
				r.typed(r.field(what), x.get<std::string>(), "virtualNetworks", g.virtualNetworks.emplace_back());
				continue;
			}
			json o;
			if (!r.element(x, what, o))
				break;
			Reader c = r.child(o, what);
			std::string id;
			if (c.str("id", id))
				c.typed(c.field("id"), id, "virtualNetworks", g.virtualNetworks.emplace_back());
			else if (c.ok())
				c.fail(c.field("id") + " is required");
		}
	}
	if (!r.ok())
		return err(r.error());
	return g;
}

Result<NetworkInterface> read_nic(const json &raw, const std::string &path)
{
	json j;
	std::string e;
	if (!top(raw, path, j, e))
		return err(e);
	Reader r(j, path);
	NetworkInterface n;
	read_name(r, n.name);
	std::string nsg;
	if (r.ref("networkSecurityGroup", nsg))
		r.typed(r.field("networkSecurityGroup"), nsg, "networkSecurityGroups", n.networkSecurityGroup);
	// Hand-written input may put the address and subnet at the top level.
	r.str("privateIPAddress", n.privateIPAddress);
	read_subnet_ref(r, "subnet", n.vnet, n.subnet);
	if (const json *cfgs = r.array("ipConfigurations"); cfgs && !cfgs->empty() && r.ok()) {
		// The primary configuration (the first if none says so) gives the
		// NIC's subnet; the others add addresses in that subnet.
		size_t pick = 0;
		for (size_t i = 0; i < cfgs->size(); i++) {
			const json &c = (*cfgs)[i];
			const json *p = c.is_object() && c.contains("properties") ? &c["properties"] : &c;
			if (p->is_object() && p->contains("primary") && (*p)["primary"] == true) {
				pick = i;
				break;
			}
		}
		std::string what = "ipConfigurations[" + std::to_string(pick) + "]";
		json o;
		if (r.element((*cfgs)[pick], what, o)) {
			Reader c = r.child(o, what);
			c.str("privateIPAddress", n.privateIPAddress);
			read_subnet_ref(c, "subnet", n.vnet, n.subnet);
		}
		for (size_t i = 0; i < cfgs->size() && r.ok(); i++) {
			if (i == pick)
				continue;
			std::string w = "ipConfigurations[" + std::to_string(i) + "]";
			json x;
			if (!r.element((*cfgs)[i], w, x))
				break;
			Reader c = r.child(x, w);
			std::string ip, vnet, subnet;
			c.str("privateIPAddress", ip);
			read_subnet_ref(c, "subnet", vnet, subnet);
			if (c.ok() && !(vnet.empty() && subnet.empty()) && !(iequals(vnet, n.vnet) && iequals(subnet, n.subnet)))
				c.fail(c.field("subnet") + " is " + vnet + "/" + subnet + ", not the primary's " + n.vnet + "/" +
				       n.subnet + ": a NIC's ipConfigurations share one subnet");
			n.secondaryIPAddresses.push_back(ip);
		}
	}
	if (!r.ok())
		return err(r.error());
	return n;
}

// ---- private endpoints and connections ----

void read_conn_state(Reader &r, ConnectionState &st, bool &has_status, bool &has_description, bool &has_actions)
{
	json o;
	if (!r.object("privateLinkServiceConnectionState", o))
		return;
	Reader c = r.child(o, "privateLinkServiceConnectionState");
	if ((has_status = c.str("status", st.status)))
		st.status = canon(st.status, {"Pending", "Approved", "Rejected", "Disconnected"});
	has_description = c.str("description", st.description);
	has_actions = c.str("actionsRequired", st.actionsRequired);
}

Result<PrivateEndpoint> read_pe(const json &raw, const std::string &path)
{
	json j;
	std::string e;
	if (!top(raw, path, j, e))
		return err(e);
	Reader r(j, path);
	PrivateEndpoint pe;
	read_name(r, pe.name);
	read_subnet_ref(r, "subnet", pe.vnet, pe.subnet);

	// The address: top level, else the static ipConfigurations, else the DNS config.
	if (!r.str("privateIPAddress", pe.privateIPAddress) && r.ok()) {
		if (const json *cfgs = r.array("ipConfigurations"); cfgs && !cfgs->empty()) {
			json o;
			if (r.element((*cfgs)[0], "ipConfigurations[0]", o)) {
				Reader c = r.child(o, "ipConfigurations[0]");
				c.str("privateIPAddress", pe.privateIPAddress);
			}
		}
		if (pe.privateIPAddress.empty() && r.ok()) {
			if (const json *dns = r.array("customDnsConfigs"); dns && !dns->empty()) {
				json o;
				if (r.element((*dns)[0], "customDnsConfigs[0]", o)) {
					Reader c = r.child(o, "customDnsConfigs[0]");
					std::vector<std::string> ips;
					if (c.strings("ipAddresses", ips) && !ips.empty())
						pe.privateIPAddress = ips[0];
				}
			}
		}
	}

	const json *autoc = r.array("privateLinkServiceConnections");
	const json *manual = r.array("manualPrivateLinkServiceConnections");
	size_t na = autoc ? autoc->size() : 0, nm = manual ? manual->size() : 0;
	if (na + nm > 1)
		r.fail("privateLinkServiceConnections: a private endpoint has exactly one connection");
	pe.manualRequest = nm > 0;
	ConnectionState st;
	bool has_status = false, has_description = false, has_actions = false;
	std::string conn_name;
	if (r.ok() && na + nm == 1) {
		std::string what = pe.manualRequest ? "manualPrivateLinkServiceConnections[0]"
						    : "privateLinkServiceConnections[0]";
		json o;
		if (r.element(pe.manualRequest ? (*manual)[0] : (*autoc)[0], what, o)) {
			Reader c = r.child(o, what);
			c.str("name", conn_name);
			std::string pls;
			if (c.ref("privateLinkServiceId", pls))
				c.typed(c.field("privateLinkServiceId"), pls, "servers", pe.server);
			if (c.strings("groupIds", pe.groupIds))
				for (auto &g : pe.groupIds)
					g = canon(g, {"mysqlServer"});
			c.str("requestMessage", pe.requestMessage);
			read_conn_state(c, st, has_status, has_description, has_actions);
		}
	}
	if (!r.ok())
		return err(r.error());
	// Defaults of SPEC §2: automatic requests are approved on creation, manual
	// ones wait; Azure shows the request message as a pending one's description.
	if (!has_status)
		st.status = pe.manualRequest ? "Pending" : "Approved";
	if (!has_description)
		st.description = pe.manualRequest ? pe.requestMessage : "Auto-Approved";
	if (!has_actions)
		st.actionsRequired = "None";
	pe.connectionState = st;
	pe.connectionName = conn_name.empty() ? default_connection_name(pe.name, pe.server) : conn_name;
	return pe;
}

Result<PrivateEndpointConnection> read_pec(const json &raw, const std::string &path, const std::string &server)
{
	json j;
	std::string e;
	if (!top(raw, path, j, e))
		return err(e);
	Reader r(j, path);
	PrivateEndpointConnection c;
	read_name(r, c.name);
	c.server = server;
	std::string id;
	if (r.str("id", id) && !segment_after(id, "servers").empty())
		c.server = segment_after(id, "servers");
	std::string pe;
	if (r.ref("privateEndpoint", pe))
		c.privateEndpoint = ref_name(pe);
	bool has_status = false, has_description = false, has_actions = false;
	read_conn_state(r, c.state, has_status, has_description, has_actions);
	if (r.ok() && !has_status)
		r.fail("privateLinkServiceConnectionState.status is required");
	if (r.ok() && c.privateEndpoint.empty() && c.name.empty())
		r.fail("privateEndpoint.id is required");
	if (!r.ok())
		return err(r.error());
	return c;
}

// ---- MySQL servers ----

bool parse_backend_text(const std::string &t, Backend &b)
{
	// "addr", "v4:port" or "[v6]:port"
	std::string addr = t, port;
	if (!t.empty() && t[0] == '[') {
		auto close = t.find(']');
		if (close == std::string::npos)
			return false;
		addr = t.substr(1, close - 1);
		if (close + 1 < t.size()) {
			if (t[close + 1] != ':' || close + 2 == t.size()) // "[v6]:" names no port
				return false;
			port = t.substr(close + 2);
		}
	} else if (std::count(t.begin(), t.end(), ':') == 1) {
		auto c = t.find(':');
		addr = t.substr(0, c);
		port = t.substr(c + 1);
		if (port.empty()) // "v4:" names no port
			return false;
	}
	b.address = addr;
	if (!port.empty()) {
		if (port.size() > 5 || port.find_first_not_of("0123456789") != std::string::npos)
			return false;
		b.port = std::stoi(port);
	}
	return true;
}

Result<FirewallRule> read_fw(const json &raw, const std::string &path)
{
	json j;
	std::string e;
	if (!top(raw, path, j, e))
		return err(e);
	Reader r(j, path);
	FirewallRule f;
	read_name(r, f.name);
	r.str("startIpAddress", f.startIpAddress);
	r.str("endIpAddress", f.endIpAddress);
	if (!r.ok())
		return err(r.error());
	return f;
}

Result<VirtualNetworkRule> read_vnr(const json &raw, const std::string &path)
{
	json j;
	std::string e;
	if (!top(raw, path, j, e))
		return err(e);
	Reader r(j, path);
	VirtualNetworkRule v;
	read_name(r, v.name);
	read_subnet_ref(r, "virtualNetworkSubnetId", v.vnet, v.subnet);
	if (!r.ok())
		return err(r.error());
	return v;
}

Result<MySqlServer> read_server(const json &raw, const std::string &path)
{
	json j;
	std::string e;
	if (!top(raw, path, j, e))
		return err(e);
	Reader r(j, path);
	MySqlServer m;
	read_name(r, m.name);
	r.str("fullyQualifiedDomainName", m.fullyQualifiedDomainName);
	if (m.fullyQualifiedDomainName.empty())
		m.fullyQualifiedDomainName = default_fqdn(m.name);
	r.str("publicIp", m.publicIp);
	if (r.str("publicNetworkAccess", m.publicNetworkAccess))
		m.publicNetworkAccess = canon(m.publicNetworkAccess, {"Enabled", "Disabled"});
	if (const json *bs = r.array("backends")) {
		for (size_t i = 0; i < bs->size() && r.ok(); i++) {
			std::string what = "backends[" + std::to_string(i) + "]";
			Backend b;
			if ((*bs)[i].is_string()) {
				if (!parse_backend_text((*bs)[i].get<std::string>(), b))
					r.fail(r.field(what) + " '" + (*bs)[i].get<std::string>() +
					       "' is not address, address:port or [address]:port");
			} else {
				json o;
				if (!r.element((*bs)[i], what, o))
					break;
				Reader c = r.child(o, what);
				c.str("address", b.address);
				c.integer("port", b.port);
				c.integer("weight", b.weight);
			}
			m.backends.push_back(b);
		}
	}
	if (const json *fws = r.array("firewallRules")) {
		for (size_t i = 0; i < fws->size() && r.ok(); i++) {
			auto f = read_fw((*fws)[i], elem_path(path + "/firewallRules", (*fws)[i], i));
			if (!f)
				return err(f.error());
			m.firewallRules.push_back(std::move(*f));
		}
	}
	if (const json *vrs = r.array("virtualNetworkRules")) {
		for (size_t i = 0; i < vrs->size() && r.ok(); i++) {
			auto v = read_vnr((*vrs)[i], elem_path(path + "/virtualNetworkRules", (*vrs)[i], i));
			if (!v)
				return err(v.error());
			m.virtualNetworkRules.push_back(std::move(*v));
		}
	}
	r.array("privateEndpointConnections"); // type check only; read by server_connections
	if (!r.ok())
		return err(r.error());
	return m;
}

Result<std::vector<PrivateEndpointConnection>> read_server_connections(const json &raw, const std::string &path,
								       const std::string &server)
{
	json j;
	std::string e;
	if (!top(raw, path, j, e))
		return err(e);
	Reader r(j, path);
	std::vector<PrivateEndpointConnection> out;
	if (const json *pecs = r.array("privateEndpointConnections")) {
		for (size_t i = 0; i < pecs->size(); i++) {
			auto c = read_pec((*pecs)[i], elem_path(path + "/privateEndpointConnections", (*pecs)[i], i),
					  server);
			if (!c)
				return err(c.error());
			out.push_back(std::move(*c));
		}
	}
	if (!r.ok())
		return err(r.error());
	return out;
}

// ---- service tags ----

Result<ServiceTags> read_tags(const json &raw, const std::string &path)
{
	if (!raw.is_object())
		return err(path + ": must be a JSON object");
	Reader r(raw, path);
	ServiceTags t;
	r.int64("changeNumber", t.changeNumber);
	r.str("cloud", t.cloud);
	if (const json *vs = r.array("values")) {
		for (size_t i = 0; i < vs->size() && r.ok(); i++) {
			std::string p = elem_path(path, (*vs)[i], i);
			json j;
			std::string e;
			if (!top((*vs)[i], p, j, e))
				return err(e);
			Reader c(j, p);
			ServiceTag tag;
			c.str("name", tag.name);
			if (!c.str("id", tag.id))
				tag.id = tag.name;
			c.str("region", tag.region);
			c.str("systemService", tag.systemService);
			c.strings("addressPrefixes", tag.addressPrefixes);
			if (!c.ok())
				return err(c.error());
			t.values.push_back(std::move(tag));
		}
	}
	if (!r.ok())
		return err(r.error());
	return t;
}

} // namespace

// A regular file only: a FIFO or device would block the reader (the agent's
// one control thread) or never end; the size cap keeps one file from taking
// the host's memory.
Result<std::string> read_text_file(const std::string &path, uint64_t max_bytes)
{
	// Refused before it is opened too: opening some devices does something.
	struct stat pre{};
	if (stat(path.c_str(), &pre) == 0 && !S_ISREG(pre.st_mode))
		return err(path + ": not a regular file");
	int fd = open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
	if (fd < 0)
		return err(path + ": cannot open: " + std::strerror(errno));
	struct stat st{};
	if (fstat(fd, &st) || !S_ISREG(st.st_mode)) {
		close(fd);
		return err(path + ": not a regular file");
	}
	if (uint64_t(st.st_size) > max_bytes) {
		close(fd);
		return err(path + ": " + std::to_string(st.st_size) + " bytes, more than the " +
			   std::to_string(max_bytes >> 20) + " MiB this file may have");
	}
	std::string text;
	char buf[65536];
	for (;;) {
		ssize_t n = read(fd, buf, sizeof buf);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			int e = errno;
			close(fd);
			return err(path + ": cannot read: " + std::strerror(e));
		}
		if (n == 0)
			break;
		if (text.size() + size_t(n) > max_bytes) { // grew while read
			close(fd);
			return err(path + ": more than the " + std::to_string(max_bytes >> 20) + " MiB this file may have");
		}
		text.append(buf, size_t(n));
	}
	close(fd);
	return text;
}

// ---- ids and references ----

std::string resource_id(const std::string &provider_path)
{
	return std::string("/subscriptions/") + kSubscriptionId + "/resourceGroups/" + kResourceGroup + "/providers/" +
	       provider_path;
}

std::string vnet_id(const std::string &vnet) { return resource_id("Microsoft.Network/virtualNetworks/" + vnet); }
std::string subnet_id(const std::string &vnet, const std::string &subnet)
{
	return vnet_id(vnet) + "/subnets/" + subnet;
}
std::string nsg_id(const std::string &nsg) { return resource_id("Microsoft.Network/networkSecurityGroups/" + nsg); }
std::string local_network_gateway_id(const std::string &g)
{
	return resource_id("Microsoft.Network/localNetworkGateways/" + g);
}
std::string nic_id(const std::string &nic) { return resource_id("Microsoft.Network/networkInterfaces/" + nic); }
std::string private_endpoint_id(const std::string &pe)
{
	return resource_id("Microsoft.Network/privateEndpoints/" + pe);
}
std::string server_id(const std::string &server) { return resource_id("Microsoft.DBforMySQL/servers/" + server); }
std::string pec_id(const std::string &server, const std::string &c)
{
	return server_id(server) + "/privateEndpointConnections/" + c;
}

std::string ref_name(const std::string &ref)
{
	auto s = segments(ref);
	return s.empty() ? std::string() : s.back();
}

std::optional<std::string> typed_ref_name(const std::string &ref, std::string_view type)
{
	auto s = segments(ref);
	if (s.size() == 1 && ref.find('/') == std::string::npos)
		return s[0];
	if (s.size() >= 2 && iequals(s[s.size() - 2], type))
		return s.back();
	return std::nullopt;
}

Result<std::pair<std::string, std::string>> parse_subnet_ref(const std::string &ref)
{
	// An id ends in virtualNetworks/<vnet>/subnets/<subnet>: read by
	// position, so a VNet or subnet may be named like a keyword (the ids
	// linkgate writes for a VNet named "virtualNetworks" read back).
	auto s = segments(ref);
	std::string vnet, subnet;
	size_t n = s.size();
	if (n >= 4 && iequals(s[n - 4], "virtualNetworks") && iequals(s[n - 2], "subnets")) {
		vnet = s[n - 3];
		subnet = s[n - 1];
	} else if (n == 2 && ref.front() != '/') {
		vnet = s[0];
		subnet = s[1];
	}
	if (vnet.empty() || subnet.empty())
		return err("'" + ref + "' is not a subnet id (.../virtualNetworks/<vnet>/subnets/<subnet> or <vnet>/<subnet>)");
	return std::pair{vnet, subnet};
}

// ---- writers ----

json security_rule_to_json(const SecurityRule &r, const std::string &nsg, bool is_default)
{
	const char *kind = is_default ? "defaultSecurityRules" : "securityRules";
	json j = resource(r.name, nsg_id(nsg) + "/" + kind + "/" + r.name,
			  is_default ? "Microsoft.Network/networkSecurityGroups/defaultSecurityRules"
				     : "Microsoft.Network/networkSecurityGroups/securityRules");
	j["priority"] = r.priority;
	j["direction"] = r.direction;
	j["access"] = r.access;
	j["protocol"] = r.protocol;
	// az prints both forms of each field: the unused singular as null, the unused plural as [].
	j["sourceAddressPrefix"] = string_or_null(r.sourceAddressPrefix);
	j["sourceAddressPrefixes"] = r.sourceAddressPrefixes;
	j["destinationAddressPrefix"] = string_or_null(r.destinationAddressPrefix);
	j["destinationAddressPrefixes"] = r.destinationAddressPrefixes;
	j["sourcePortRange"] = string_or_null(r.sourcePortRange);
	j["sourcePortRanges"] = r.sourcePortRanges;
	j["destinationPortRange"] = string_or_null(r.destinationPortRange);
	j["destinationPortRanges"] = r.destinationPortRanges;
	j["description"] = string_or_null(r.description);
	return j;
}

json nsg_to_json(const NetworkSecurityGroup &n, const State *s)
{
	json j = resource(n.name, nsg_id(n.name), "Microsoft.Network/networkSecurityGroups");
	j["flushConnection"] = n.flushConnection;
	j["securityRules"] = json::array();
	for (const auto &r : n.securityRules)
		j["securityRules"].push_back(security_rule_to_json(r, n.name));
	j["defaultSecurityRules"] = json::array();
	for (const auto &r : default_security_rules())
		j["defaultSecurityRules"].push_back(security_rule_to_json(r, n.name, true));
	if (s) {
		json subnets = json::array(), nics = json::array();
		for (const auto &v : s->virtualNetworks)
			for (const auto &sn : v.subnets)
				if (sn.networkSecurityGroup == n.name)
					subnets.push_back(ref_json(subnet_id(v.name, sn.name)));
		for (const auto &nic : s->networkInterfaces)
			if (nic.networkSecurityGroup == n.name)
				nics.push_back(ref_json(nic_id(nic.name)));
		j["subnets"] = subnets;
		j["networkInterfaces"] = nics;
	}
	return j;
}

json subnet_to_json(const Subnet &sn, const std::string &vnet)
{
	json j = resource(sn.name, subnet_id(vnet, sn.name), "Microsoft.Network/virtualNetworks/subnets");
	j["addressPrefix"] = sn.addressPrefix;
	j["networkSecurityGroup"] =
		sn.networkSecurityGroup.empty() ? json(nullptr) : ref_json(nsg_id(sn.networkSecurityGroup));
	j["serviceEndpoints"] = json::array();
	for (const auto &e : sn.serviceEndpoints)
		j["serviceEndpoints"].push_back(json{{"service", e}, {"provisioningState", "Succeeded"}});
	j["privateEndpointNetworkPolicies"] = sn.privateEndpointNetworkPolicies;
	return j;
}

json vnet_to_json(const VirtualNetwork &v)
{
	json j = resource(v.name, vnet_id(v.name), "Microsoft.Network/virtualNetworks");
	j["addressSpace"] = json{{"addressPrefixes", v.addressPrefixes}};
	if (v.vni)
		j["vni"] = *v.vni;
	j["subnets"] = json::array();
	for (const auto &s : v.subnets)
		j["subnets"].push_back(subnet_to_json(s, v.name));
	j["virtualNetworkPeerings"] = json::array();
	for (const auto &p : v.peerings) {
		json pj = resource(p, vnet_id(v.name) + "/virtualNetworkPeerings/" + p,
				   "Microsoft.Network/virtualNetworks/virtualNetworkPeerings");
		pj["remoteVirtualNetwork"] = ref_json(vnet_id(p));
		j["virtualNetworkPeerings"].push_back(pj);
	}
	return j;
}

json local_network_gateway_to_json(const LocalNetworkGateway &g)
{
	json j = resource(g.name, local_network_gateway_id(g.name), "Microsoft.Network/localNetworkGateways");
	j["localNetworkAddressSpace"] = json{{"addressPrefixes", g.addressPrefixes}};
	j["virtualNetworks"] = json::array();
	for (const auto &v : g.virtualNetworks)
		j["virtualNetworks"].push_back(ref_json(vnet_id(v)));
	return j;
}

json nic_to_json(const NetworkInterface &n)
{
	json j = resource(n.name, nic_id(n.name), "Microsoft.Network/networkInterfaces");
	json cfg = resource("ipconfig1", nic_id(n.name) + "/ipConfigurations/ipconfig1",
			    "Microsoft.Network/networkInterfaces/ipConfigurations");
	cfg["primary"] = true;
	cfg["privateIPAddress"] = n.privateIPAddress;
	cfg["privateIPAddressVersion"] = n.privateIPAddress.find(':') == std::string::npos ? "IPv4" : "IPv6";
	cfg["privateIPAllocationMethod"] = "Static";
	cfg["subnet"] = ref_json(subnet_id(n.vnet, n.subnet));
	j["ipConfigurations"] = json::array({cfg});
	for (size_t i = 0; i < n.secondaryIPAddresses.size(); i++) {
		const std::string &ip = n.secondaryIPAddresses[i];
		std::string cn = "ipconfig" + std::to_string(i + 2);
		json c = resource(cn, nic_id(n.name) + "/ipConfigurations/" + cn,
				  "Microsoft.Network/networkInterfaces/ipConfigurations");
		c["primary"] = false;
		c["privateIPAddress"] = ip;
		c["privateIPAddressVersion"] = ip.find(':') == std::string::npos ? "IPv4" : "IPv6";
		c["privateIPAllocationMethod"] = "Static";
		c["subnet"] = ref_json(subnet_id(n.vnet, n.subnet));
		j["ipConfigurations"].push_back(std::move(c));
	}
	j["networkSecurityGroup"] =
		n.networkSecurityGroup.empty() ? json(nullptr) : ref_json(nsg_id(n.networkSecurityGroup));
	return j;
}

static json state_json(const ConnectionState &st)
{
	return json{{"status", st.status}, {"description", st.description}, {"actionsRequired", st.actionsRequired}};
}

json private_endpoint_to_json(const PrivateEndpoint &pe, const State *s)
{
	json j = resource(pe.name, private_endpoint_id(pe.name), "Microsoft.Network/privateEndpoints");
	j["subnet"] = ref_json(subnet_id(pe.vnet, pe.subnet));
	const char *kind = pe.manualRequest ? "manualPrivateLinkServiceConnections" : "privateLinkServiceConnections";
	json c = resource(pe.connectionName, private_endpoint_id(pe.name) + "/" + kind + "/" + pe.connectionName,
			  pe.manualRequest ? "Microsoft.Network/privateEndpoints/manualPrivateLinkServiceConnections"
					   : "Microsoft.Network/privateEndpoints/privateLinkServiceConnections");
	c["privateLinkServiceId"] = server_id(pe.server);
	c["groupIds"] = pe.groupIds;
	c["requestMessage"] = string_or_null(pe.requestMessage);
	c["privateLinkServiceConnectionState"] = state_json(pe.connectionState);
	j["privateLinkServiceConnections"] = json::array();
	j["manualPrivateLinkServiceConnections"] = json::array();
	j[kind].push_back(c);
	j["ipConfigurations"] = json::array(
		{json{{"name", "ipconfig1"}, {"groupId", "mysqlServer"}, {"memberName", "mysqlServer"},
		      {"privateIPAddress", pe.privateIPAddress}}});
	std::string fqdn = default_fqdn(pe.server);
	if (s)
		if (const MySqlServer *m = s->server(pe.server); m && !m->fullyQualifiedDomainName.empty())
			fqdn = m->fullyQualifiedDomainName;
	j["customDnsConfigs"] = json::array({json{{"fqdn", fqdn}, {"ipAddresses", json::array({pe.privateIPAddress})}}});
	return j;
}

json pec_to_json(const PrivateEndpoint &pe)
{
	json j = resource(pe.connectionName, pec_id(pe.server, pe.connectionName),
			  "Microsoft.DBforMySQL/servers/privateEndpointConnections");
	j["provisioningState"] = "Ready"; // what the MySQL resource provider reports
	j["privateEndpoint"] = json{{"id", private_endpoint_id(pe.name)}};
	j["privateLinkServiceConnectionState"] = state_json(pe.connectionState);
	return j;
}

json firewall_rule_to_json(const FirewallRule &r, const std::string &server)
{
	json j = resource(r.name, server_id(server) + "/firewallRules/" + r.name,
			  "Microsoft.DBforMySQL/servers/firewallRules");
	j.erase("provisioningState"); // az prints none for firewall rules
	j["startIpAddress"] = r.startIpAddress;
	j["endIpAddress"] = r.endIpAddress;
	return j;
}

json vnet_rule_to_json(const VirtualNetworkRule &r, const std::string &server)
{
	json j = resource(r.name, server_id(server) + "/virtualNetworkRules/" + r.name,
			  "Microsoft.DBforMySQL/servers/virtualNetworkRules");
	j.erase("provisioningState");
	j["virtualNetworkSubnetId"] = subnet_id(r.vnet, r.subnet);
	j["ignoreMissingVnetServiceEndpoint"] = false;
	j["state"] = "Ready";
	return j;
}

json server_to_json(const MySqlServer &m, const State &s)
{
	json j = resource(m.name, server_id(m.name), "Microsoft.DBforMySQL/servers");
	j["userVisibleState"] = "Ready";
	j["fullyQualifiedDomainName"] = m.fullyQualifiedDomainName;
	j["publicIp"] = m.publicIp;
	j["publicNetworkAccess"] = m.publicNetworkAccess;
	j["backends"] = json::array();
	for (const auto &b : m.backends)
		j["backends"].push_back(json{{"address", b.address}, {"port", b.port}, {"weight", b.weight}});
	j["firewallRules"] = json::array();
	for (const auto &r : m.firewallRules)
		j["firewallRules"].push_back(firewall_rule_to_json(r, m.name));
	j["virtualNetworkRules"] = json::array();
	for (const auto &r : m.virtualNetworkRules)
		j["virtualNetworkRules"].push_back(vnet_rule_to_json(r, m.name));
	j["privateEndpointConnections"] = json::array();
	for (const auto &pe : s.privateEndpoints)
		if (pe.server == m.name && pe.connectionPresent)
			j["privateEndpointConnections"].push_back(pec_to_json(pe));
	return j;
}

json service_tags_to_json(const ServiceTags &t)
{
	json j{{"changeNumber", t.changeNumber}, {"cloud", t.cloud}, {"values", json::array()}};
	for (const auto &v : t.values)
		j["values"].push_back(json{{"name", v.name},
					   {"id", v.id},
					   {"properties",
					    {{"changeNumber", t.changeNumber},
					     {"region", v.region},
					     {"systemService", v.systemService},
					     {"addressPrefixes", v.addressPrefixes}}}});
	return j;
}

json state_to_json(const State &s)
{
	json j = json::object();
	auto list = [&](const char *key, const auto &items, auto &&fn) {
		j[key] = json::array();
		for (const auto &x : items)
			j[key].push_back(fn(x));
	};
	list("virtualNetworks", s.virtualNetworks, [](const VirtualNetwork &v) { return vnet_to_json(v); });
	list("localNetworkGateways", s.localNetworkGateways,
	     [](const LocalNetworkGateway &g) { return local_network_gateway_to_json(g); });
	list("networkSecurityGroups", s.networkSecurityGroups,
	     [&](const NetworkSecurityGroup &n) { return nsg_to_json(n, &s); });
	list("networkInterfaces", s.networkInterfaces, [](const NetworkInterface &n) { return nic_to_json(n); });
	list("privateEndpoints", s.privateEndpoints,
	     [&](const PrivateEndpoint &p) { return private_endpoint_to_json(p, &s); });
	list("mysqlServers", s.servers, [&](const MySqlServer &m) { return server_to_json(m, s); });
	j["serviceTags"] = service_tags_to_json(s.serviceTags);
	return j;
}

// ---- public readers ----

Result<SecurityRule> security_rule_from_json(const json &j, const std::string &nsg)
{
	return read_rule(j, elem_path("networkSecurityGroups/" + nsg + "/securityRules", j, kNoIndex));
}
Result<NetworkSecurityGroup> nsg_from_json(const json &j)
{
	return read_nsg(j, elem_path("networkSecurityGroups", j, kNoIndex));
}
Result<Subnet> subnet_from_json(const json &j, const std::string &vnet)
{
	return read_subnet(j, elem_path("virtualNetworks/" + vnet + "/subnets", j, kNoIndex));
}
Result<VirtualNetwork> vnet_from_json(const json &j) { return read_vnet(j, elem_path("virtualNetworks", j, kNoIndex)); }
Result<LocalNetworkGateway> local_network_gateway_from_json(const json &j)
{
	return read_lng(j, elem_path("localNetworkGateways", j, kNoIndex));
}
Result<NetworkInterface> nic_from_json(const json &j)
{
	return read_nic(j, elem_path("networkInterfaces", j, kNoIndex));
}
Result<PrivateEndpoint> private_endpoint_from_json(const json &j)
{
	return read_pe(j, elem_path("privateEndpoints", j, kNoIndex));
}
Result<PrivateEndpointConnection> pec_from_json(const json &j, const std::string &server)
{
	// The path names the server the id names, as read_pec will.
	std::string srv = server;
	if (j.is_object() && j.contains("id") && j["id"].is_string()) {
		std::string from_id = segment_after(j["id"].get<std::string>(), "servers");
		if (!from_id.empty())
			srv = from_id;
	}
	return read_pec(j, elem_path("mysqlServers/" + srv + "/privateEndpointConnections", j, kNoIndex), server);
}
Result<FirewallRule> firewall_rule_from_json(const json &j, const std::string &server)
{
	return read_fw(j, elem_path("mysqlServers/" + server + "/firewallRules", j, kNoIndex));
}
Result<VirtualNetworkRule> vnet_rule_from_json(const json &j, const std::string &server)
{
	return read_vnr(j, elem_path("mysqlServers/" + server + "/virtualNetworkRules", j, kNoIndex));
}
Result<MySqlServer> server_from_json(const json &j) { return read_server(j, elem_path("mysqlServers", j, kNoIndex)); }
Result<std::vector<PrivateEndpointConnection>> server_connections_from_json(const json &j)
{
	std::string path = elem_path("mysqlServers", j, kNoIndex);
	std::string name = path.substr(std::string("mysqlServers/").size());
	return read_server_connections(j, path, name == "(unnamed)" ? "" : name);
}
Result<ServiceTags> service_tags_from_json(const json &j) { return read_tags(j, "serviceTags"); }

Status apply_pec(State &s, const PrivateEndpointConnection &c)
{
	PrivateEndpoint *pe = nullptr;
	if (!c.privateEndpoint.empty()) {
		pe = s.private_endpoint(c.privateEndpoint);
	} else {
		for (auto &p : s.privateEndpoints)
			if (iequals(p.connectionName, c.name) && (c.server.empty() || iequals(p.server, c.server)))
				pe = &p;
	}
	std::string where = "mysqlServers/" + c.server + "/privateEndpointConnections/" + c.name;
	if (!pe)
		return err(where + ": privateEndpoint '" + (c.privateEndpoint.empty() ? c.name : c.privateEndpoint) +
			   "' does not exist");
	if (!c.server.empty() && pe->server != c.server)
		return err(where + ": private endpoint '" + pe->name + "' targets server '" + pe->server + "'");
	if (!c.name.empty())
		pe->connectionName = c.name;
	pe->connectionState = c.state;
	pe->connectionPresent = true;
	return Ok{};
}

Result<State> state_from_json(const json &j)
{
	static const char *const keys[] = {"virtualNetworks",	"localNetworkGateways", "networkSecurityGroups",
					   "networkInterfaces", "privateEndpoints",	"mysqlServers",
					   "serviceTags"};
	if (!j.is_object())
		return err("state: must be a JSON object");
	for (const auto &[k, v] : j.items()) {
		// [&key = k]: clang 14 (scripts/fuzz) cannot capture a structured binding.
		if (std::find_if(std::begin(keys), std::end(keys), [&key = k](const char *x) { return key == x; }) == std::end(keys))
			return err("state: unknown key '" + k + "'");
		if (k != "serviceTags" && !v.is_null() && !v.is_array())
			return err("state: " + k + " must be an array");
	}
	State s;
	auto each = [&](const char *key, auto &&fn) -> Status {
		auto it = j.find(key);
		if (it == j.end() || it->is_null())
			return Ok{};
		for (size_t i = 0; i < it->size(); i++)
			if (Status st = fn((*it)[i], elem_path(key, (*it)[i], i)); !st)
				return st;
		return Ok{};
	};
	auto add = [](auto &vec, auto r) -> Status {
		if (!r)
			return err(r.error());
		vec.push_back(std::move(*r));
		return Ok{};
	};
	if (auto it = j.find("serviceTags"); it != j.end() && !it->is_null()) {
		auto t = read_tags(*it, "serviceTags");
		if (!t)
			return err(t.error());
		s.serviceTags = std::move(*t);
	}
	Status st = each("virtualNetworks", [&](const json &x, const std::string &p) {
		return add(s.virtualNetworks, read_vnet(x, p));
	});
	if (st)
		st = each("localNetworkGateways", [&](const json &x, const std::string &p) {
			return add(s.localNetworkGateways, read_lng(x, p));
		});
	if (st)
		st = each("networkSecurityGroups", [&](const json &x, const std::string &p) {
			return add(s.networkSecurityGroups, read_nsg(x, p));
		});
	if (st)
		st = each("networkInterfaces", [&](const json &x, const std::string &p) {
			return add(s.networkInterfaces, read_nic(x, p));
		});
	if (st)
		st = each("privateEndpoints", [&](const json &x, const std::string &p) {
			return add(s.privateEndpoints, read_pe(x, p));
		});
	if (st)
		st = each("mysqlServers", [&](const json &x, const std::string &p) {
			return add(s.servers, read_server(x, p));
		});
	if (!st)
		return err(st.error());
	canonical_references(s);

	// The server's list of connections is the PEC's home in ARM: it wins over
	// the copy inside the endpoint, and an endpoint missing from a list that is
	// given has had its connection deleted.
	auto it = j.find("mysqlServers");
	for (size_t i = 0; it != j.end() && !it->is_null() && i < it->size(); i++) {
		const json &raw = (*it)[i];
		const MySqlServer &m = s.servers[i];
		std::string path = elem_path("mysqlServers", raw, i);
		json flat;
		std::string e;
		if (!top(raw, path, flat, e))
			return err(e);
		if (!flat.contains("privateEndpointConnections") || flat["privateEndpointConnections"].is_null())
			continue;
		auto conns = read_server_connections(raw, path, m.name);
		if (!conns)
			return err(conns.error());
		// Cleared first, so exactly the endpoints the list names end up present.
		for (auto &pe : s.privateEndpoints)
			if (pe.server == m.name)
				pe.connectionPresent = false;
		for (auto c : *conns) {
			if (!c.server.empty() && !iequals(c.server, m.name))
				return err(path + ": privateEndpointConnections names server '" + c.server + "'");
			c.server = m.name;
			if (Status a = apply_pec(s, c); !a)
				return err(a.error());
		}
	}
	return s;
}

size_t nesting_depth(std::string_view text)
{
	size_t depth = 0, deepest = 0;
	bool in_string = false, escaped = false;
	for (char c : text) {
		if (in_string) {
			if (escaped)
				escaped = false;
			else if (c == '\\')
				escaped = true;
			else if (c == '"')
				in_string = false;
		} else if (c == '"') {
			in_string = true;
		} else if (c == '[' || c == '{') {
			deepest = std::max(deepest, ++depth);
		} else if ((c == ']' || c == '}') && depth > 0) {
			depth--;
		}
	}
	return deepest;
}

namespace {

// A SAX pass over text that parses: counts every key (total) or, with
// find, names the first key an object repeats (a key set per open object).
struct KeyScan {
	bool find = false;
	size_t total = 0;
	std::vector<std::set<std::string>> open;
	std::string repeated;

	bool null() { return true; }
	bool boolean(bool) { return true; }
	bool number_integer(json::number_integer_t) { return true; }
	bool number_unsigned(json::number_unsigned_t) { return true; }
	bool number_float(json::number_float_t, const std::string &) { return true; }
	bool string(std::string &) { return true; }
	bool binary(json::binary_t &) { return true; }
	bool start_object(size_t)
	{
		if (find)
			open.emplace_back();
		return true;
	}
	bool key(std::string &k)
	{
		total++;
		if (find && !open.empty() && !open.back().insert(k).second)
			repeated = k;
		return repeated.empty(); // found: stop reading
	}
	bool end_object()
	{
		if (find)
			open.pop_back();
		return true;
	}
	bool start_array(size_t) { return true; }
	bool end_array() { return true; }
	bool parse_error(size_t, const std::string &, const nlohmann::detail::exception &) { return false; }
};

// Members of every object of j, all levels.
size_t members(const json &j)
{
	size_t n = 0;
	if (j.is_object())
		for (const auto &[k, v] : j.items())
			n += 1 + members(v);
	else if (j.is_array())
		for (const auto &v : j)
			n += members(v);
	return n;
}

} // namespace

json parse_json_unique_keys(std::string_view text)
{
	// nlohmann keeps the last of two equal keys: {"name":"a","name":"b"}
	// would silently be "b". Each repeat leaves one member fewer than the
	// keys written, so a count tells; the slow search for the key runs only
	// then. (A callback parser with a key set per object cost 10x a parse.)
	// Depth is bounded by the callers' checks.
	json j = json::parse(text);
	KeyScan scan;
	json::sax_parse(text, &scan);
	if (scan.total == members(j))
		return j;
	KeyScan find;
	find.find = true;
	json::sax_parse(text, &find);
	throw DuplicateKey("duplicate key \"" + find.repeated + "\" in an object");
}

Result<json> parse_json_text(std::string_view text, const std::string &what)
{
	if (nesting_depth(text) > kMaxJsonDepth)
		return err(what + ": JSON nested deeper than " + std::to_string(kMaxJsonDepth) + " levels");
	if (text.find('\0') != std::string_view::npos) // the parser would stop there and ignore the rest
		return err(what + ": a NUL byte in the JSON");
	try {
		return parse_json_unique_keys(text);
	} catch (const DuplicateKey &e) {
		return err(what + ": " + e.what());
	} catch (const json::exception &e) {
		// what() is "[json.exception.parse_error.101] parse error at line L, column C: ..."
		// (or out_of_range.406 for a number beyond a double)
		std::string w = e.what();
		auto close = w.find("] ");
		return err(what + ": " + (close == std::string::npos ? w : w.substr(close + 2)));
	}
}

Result<json> read_json_file(const std::string &path, uint64_t max_bytes)
{
	auto text = read_text_file(path, max_bytes);
	if (!text)
		return err(text.error());
	return parse_json_text(*text, path);
}

Result<State> load_state_file(const std::string &path)
{
	auto j = read_json_file(path, kMaxStateFileBytes);
	if (!j)
		return err(j.error());
	auto s = state_from_json(*j);
	if (!s)
		return err(path + ": " + s.error());
	return s;
}

Result<ServiceTags> load_service_tags_file(const std::string &path)
{
	auto j = read_json_file(path);
	if (!j)
		return err(j.error());
	auto t = service_tags_from_json(*j);
	if (!t)
		return err(path + ": " + t.error());
	return t;
}

// The rename is atomic; durable: the file and the directory entry fsynced.
Status save_state_file(const std::string &path, const State &s, bool durable, bool *renamed)
{
	return write_file_atomic(path, state_to_json(s).dump(2, ' ', false, json::error_handler_t::replace) + "\n",
				 durable, renamed);
}

Status write_file_atomic(const std::string &path, const std::string &text, bool durable, bool *renamed)
{
	if (renamed)
		*renamed = false;
	std::string tmp = path + ".tmp.XXXXXX";
	auto sys_err = [&](const std::string &what) { return err(path + ": " + what + ": " + std::strerror(errno)); };

	int fd = mkostemp(tmp.data(), O_CLOEXEC);
	if (fd < 0)
		return sys_err("cannot create temporary file");
	auto fail = [&](const std::string &what) {
		Error e = sys_err(what);
		if (fd >= 0)
			close(fd);
		unlink(tmp.c_str());
		return e;
	};
	for (size_t off = 0; off < text.size();) {
		ssize_t n = write(fd, text.data() + off, text.size() - off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return fail("cannot write");
		off += size_t(n);
	}
	if (durable && fsync(fd) != 0)
		return fail("cannot fsync");
	int rc = close(fd);
	fd = -1;
	if (rc != 0)
		return fail("cannot close");
	// The directory is opened before the rename: a directory it cannot
	// open fails the write while the old file is still in place.
	int dfd = -1;
	if (durable) {
		auto slash = path.rfind('/');
		std::string dir = slash == std::string::npos ? "." : slash == 0 ? "/" : path.substr(0, slash);
		dfd = open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (dfd < 0)
			return fail("cannot open directory " + dir);
	}
	if (rename(tmp.c_str(), path.c_str()) != 0) {
		Error e = fail("cannot rename");
		if (dfd >= 0)
			close(dfd);
		return e;
	}
	if (renamed)
		*renamed = true;
	if (dfd < 0)
		return Ok{};
	// The rename is durable only once the directory entry is on disk.
	rc = fsync(dfd);
	close(dfd);
	if (rc != 0)
		return sys_err("cannot fsync its directory (the new file is in place)");
	return Ok{};
}

} // namespace lg
