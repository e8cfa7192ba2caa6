// linkgatectl: the command-line client of linkgated's control socket. Its
// commands and flags are az's (`network nsg rule create --nsg-name ...`);
// each leaf command is one JSON-RPC method whose params are the flags in
// camelCase. Output is ARM JSON (as az prints it) or, with -o table, columns.
// Exit codes: 0 ok, 1 rejected, 2 usage, 3 not found. Errors are one line:
// control characters in them, and in table cells, are printed as escapes.
#include <CLI/CLI.hpp>

#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <filesystem>
#include <functional>
#include <iostream>
#include <list>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "arm_json.hpp"
#include "service.hpp"

using json = nlohmann::json;
using namespace lg::agent;

namespace {

constexpr int kExitOk = 0, kExitRejected = 1, kExitUsage = 2, kExitNotFound = 3;
constexpr int64_t kRequestId = 1;

// Bytes of a valid UTF-8 sequence at s[i], 0 if there is none.
size_t utf8_length(std::string_view s, size_t i)
{
	auto at = [&](size_t k) { return i + k < s.size() ? static_cast<unsigned char>(s[i + k]) : 0u; };
	auto cont = [&](size_t k, unsigned lo = 0x80, unsigned hi = 0xbf) { return at(k) >= lo && at(k) <= hi; };
	unsigned c = at(0);
	if (c >= 0xc2 && c <= 0xdf)
		return cont(1) ? 2 : 0;
	if (c >= 0xe0 && c <= 0xef) // no overlong forms, no surrogates
		return cont(1, c == 0xe0 ? 0xa0 : 0x80, c == 0xed ? 0x9f : 0xbf) && cont(2) ? 3 : 0;
	if (c >= 0xf0 && c <= 0xf4)
		return cont(1, c == 0xf0 ? 0x90 : 0x80, c == 0xf4 ? 0x8f : 0xbf) && cont(2) && cont(3) ? 4 : 0;
	return 0;
}

// Text with its control characters as escapes (\n, \t, \x1b; C1 as \u009b;
// a byte that is not UTF-8 as \xNN), so that a name or message from the agent
// cannot end a line, forge a table row or drive the terminal. Backslashes
// stay as they are: the escapes are for reading, not for parsing back.
std::string printable(std::string_view s)
{
	static const char hex[] = "0123456789abcdef";
	std::string out;
	out.reserve(s.size());
	auto code = [&](const char *prefix, unsigned v) {
		out += prefix;
		out += hex[(v >> 4) & 15];
		out += hex[v & 15];
	};
	for (size_t i = 0; i < s.size();) {
		unsigned c = static_cast<unsigned char>(s[i]);
		if (c < 0x80) {
			if (c == '\n')
				out += "\\n";
			else if (c == '\r')
				out += "\\r";
			else if (c == '\t')
				out += "\\t";
			else if (c < 0x20 || c == 0x7f)
				code("\\x", c);
			else
				out += char(c);
			i++;
			continue;
		}
		size_t n = utf8_length(s, i);
		if (n == 0) {
			code("\\x", c);
			i++;
		} else if (n == 2 && c == 0xc2 && static_cast<unsigned char>(s[i + 1]) < 0xa0) {
			code("\\u00", static_cast<unsigned char>(s[i + 1])); // U+0080..U+009F
			i += 2;
		} else {
			out.append(s.substr(i, n));
			i += n;
		}
	}
	return out;
}

// JSON text with DEL and the C1 controls as \u escapes. JSON lets both
// stand raw, and U+009B is a CSI to some terminals; outside strings, dump()
// writes neither, so every one of them is inside a string.
std::string terminal_safe_json(const std::string &text)
{
	std::string out;
	out.reserve(text.size());
	for (size_t i = 0; i < text.size(); i++) {
		unsigned char c = static_cast<unsigned char>(text[i]);
		if (c == 0x7f) {
			out += "\\u007f";
		} else if (c == 0xc2 && i + 1 < text.size() && static_cast<unsigned char>(text[i + 1]) < 0xa0 &&
			   static_cast<unsigned char>(text[i + 1]) >= 0x80) {
			static const char hex[] = "0123456789abcdef";
			unsigned v = static_cast<unsigned char>(text[++i]);
			out += "\\u00";
			out += hex[v >> 4];
			out += hex[v & 15];
		} else {
			out += char(c);
		}
	}
	return out;
}

int fail(int code, const std::string &message)
{
	std::fprintf(stderr, "ERROR: %s\n", printable(message).c_str());
	return code;
}

enum class T { Str, List, Int, Bool, File };
enum class Kind { None, Vnet, Subnet, Nic, Nsg, Rule, Server, Fw, Vnr, Pe, Pec, Tags, State, Explain, Stats, Flows };

struct Flag {
	const char *flags; // CLI11 names, e.g. "--name,-n"
	const char *key;   // the param
	T type;
	bool required;
	const char *help;
	// az's enum arguments: any case in, the canonical spelling out; any
	// other value is a usage error (exit 2), as in az.
	std::vector<std::string> choices = {};
};

struct Leaf {
	CLI::App *cmd = nullptr;
	std::string method;
	Kind kind = Kind::None;
	std::vector<Flag> flags;
	std::vector<CLI::Option *> opts;
	std::deque<std::string> strs;
	std::deque<std::vector<std::string>> lists;
	std::deque<int64_t> ints;
};

std::list<Leaf> g_leaves;

CLI::App *group(CLI::App *parent, const char *name, const char *help)
{
	CLI::App *g = parent->add_subcommand(name, help);
	g->require_subcommand(1);
	g->fallthrough();
	return g;
}

// Integers are decimal, as az reads them (Python's int()): "0200" is 200,
// "0x10" an error. CLI11 2.1 converts with strtoll(..., 0), which reads a
// leading 0 as octal and 0x as hex, and ignores ERANGE (a number past int64
// would arrive as INT64_MAX); so a transform hands it the number rewritten.
const CLI::Validator in_int64(
	[](std::string &s) -> std::string {
		size_t i = (!s.empty() && (s[0] == '+' || s[0] == '-')) ? 1 : 0;
		if (i == s.size() || s.find_first_not_of("0123456789", i) != std::string::npos)
			return "not a decimal integer: " + s;
		errno = 0;
		long long v = std::strtoll(s.c_str(), nullptr, 10);
		if (errno == ERANGE)
			return "out of range: " + s;
		s = std::to_string(v);
		return "";
	},
	"INT");

void leaf(CLI::App *parent, const char *name, std::string method, Kind kind, std::vector<Flag> flags,
	  const char *help)
{
	Leaf &l = g_leaves.emplace_back();
	l.cmd = parent->add_subcommand(name, help);
	l.cmd->fallthrough();
	l.method = std::move(method);
	l.kind = kind;
	l.flags = std::move(flags);
	for (const Flag &f : l.flags) {
		CLI::Option *o = nullptr;
		switch (f.type) {
		case T::Str:
			o = l.cmd->add_option(f.flags, l.strs.emplace_back(), f.help);
			break;
		case T::File:
			o = l.cmd->add_option(f.flags, l.strs.emplace_back(), f.help)->check(CLI::ExistingFile);
			break;
		case T::Bool:
			// az's bools: "--flag", "--flag true", "--flag false".
			o = l.cmd->add_option(f.flags, l.lists.emplace_back(), f.help)
				    ->expected(0, 1)
				    ->check(CLI::IsMember({"true", "false"}, CLI::ignore_case))
				    ->option_text("[true|false]"); // not CLI11's "TEXT:{true,false}": the value may be left out
			break;
		case T::List:
			o = l.cmd->add_option(f.flags, l.lists.emplace_back(), f.help)->expected(1, -1);
			break;
		case T::Int:
			o = l.cmd->add_option(f.flags, l.ints.emplace_back(), f.help)->transform(in_int64);
			break;
		}
		if (!f.choices.empty())
			o->transform(CLI::IsMember(f.choices, CLI::ignore_case));
		if (f.required)
			o->required();
		l.opts.push_back(o);
	}
}

void build_tree(CLI::App &app)
{
	const Flag name{"--name,-n", "name", T::Str, true, "name"};
	auto *network = group(&app, "network", "virtual networks, NICs, NSGs, private endpoints, service tags");

	auto *vnet = group(network, "vnet", "virtual networks");
	leaf(vnet, "create", "network.vnet.create", Kind::Vnet,
	     {name,
	      {"--address-prefixes", "addressPrefixes", T::List, false, "address prefixes (default 10.0.0.0/16)"},
	      {"--vni", "vni", T::Int, false, "24-bit tenant id (default: derived from the name)"},
	      {"--subnet-name", "subnetName", T::Str, false, "create a subnet too"},
	      {"--subnet-prefixes", "subnetPrefixes", T::List, false, "its prefix (default 10.0.0.0/24)"}},
	     "create a virtual network");
	leaf(vnet, "delete", "network.vnet.delete", Kind::None, {name}, "delete a virtual network");
	leaf(vnet, "show", "network.vnet.show", Kind::Vnet, {name}, "show a virtual network");
	leaf(vnet, "list", "network.vnet.list", Kind::Vnet, {}, "list virtual networks");

	auto *subnet = group(vnet, "subnet", "subnets");
	const Flag vnet_name{"--vnet-name", "vnetName", T::Str, true, "virtual network"};
	std::vector<Flag> subnet_flags{
		vnet_name,
		name,
		{"--address-prefixes", "addressPrefixes", T::List, false, "address prefix"},
		{"--network-security-group,--nsg", "networkSecurityGroup", T::Str, false, "NSG name (\"\" to detach)"},
		{"--service-endpoints", "serviceEndpoints", T::List, false, "e.g. Microsoft.Sql (\"\" to clear)"},
		{"--private-endpoint-network-policies", "privateEndpointNetworkPolicies", T::Str, false,
		 "Enabled|Disabled|NetworkSecurityGroupEnabled|RouteTableEnabled",
		 {"Enabled", "Disabled", "NetworkSecurityGroupEnabled", "RouteTableEnabled"}}};
	auto create_subnet = subnet_flags;
	create_subnet[2].required = true;
	leaf(subnet, "create", "network.vnet.subnet.create", Kind::Subnet, create_subnet, "create a subnet");
	leaf(subnet, "update", "network.vnet.subnet.update", Kind::Subnet, subnet_flags, "update a subnet");
	leaf(subnet, "delete", "network.vnet.subnet.delete", Kind::None, {vnet_name, name}, "delete a subnet");
	leaf(subnet, "show", "network.vnet.subnet.show", Kind::Subnet, {vnet_name, name}, "show a subnet");
	leaf(subnet, "list", "network.vnet.subnet.list", Kind::Subnet, {vnet_name}, "list subnets");

	const Flag nsg_flag{"--network-security-group,--nsg", "networkSecurityGroup", T::Str, false, "NSG name"};
	auto *nic = group(network, "nic", "network interfaces");
	leaf(nic, "create", "network.nic.create", Kind::Nic,
	     {name,
	      {"--vnet-name", "vnetName", T::Str, false, "virtual network (unless --subnet is an id)"},
	      {"--subnet", "subnet", T::Str, true, "subnet name or id"},
	      {"--private-ip-address", "privateIpAddress", T::Str, true, "static private IP"},
	      nsg_flag},
	     "create a network interface");
	leaf(nic, "delete", "network.nic.delete", Kind::None, {name}, "delete a network interface");
	leaf(nic, "show", "network.nic.show", Kind::Nic, {name}, "show a network interface");
	leaf(nic, "list", "network.nic.list", Kind::Nic, {}, "list network interfaces");

	auto *nsg = group(network, "nsg", "network security groups");
	const Flag flush{"--flush-connection", "flushConnection", T::Bool, false,
			 "re-check existing flows when rules change (true|false)"};
	leaf(nsg, "create", "network.nsg.create", Kind::Nsg, {name, flush}, "create an NSG");
	leaf(nsg, "update", "network.nsg.update", Kind::Nsg, {name, flush}, "update an NSG");
	leaf(nsg, "delete", "network.nsg.delete", Kind::None, {name}, "delete an NSG");
	leaf(nsg, "show", "network.nsg.show", Kind::Nsg, {name}, "show an NSG");
	leaf(nsg, "list", "network.nsg.list", Kind::Nsg, {}, "list NSGs");

	auto *rule = group(nsg, "rule", "NSG security rules");
	const Flag nsg_name{"--nsg-name", "nsgName", T::Str, true, "NSG"};
	std::vector<Flag> rule_flags{
		nsg_name,
		name,
		{"--priority", "priority", T::Int, false, "100-4096"},
		{"--direction", "direction", T::Str, false, "Inbound|Outbound (default Inbound)", {"Inbound", "Outbound"}},
		{"--access", "access", T::Str, false, "Allow|Deny (default Allow)", {"Allow", "Deny"}},
		{"--protocol", "protocol", T::Str, false, "Tcp|Udp|Icmp|Esp|Ah|* (default *)",
		 {"Tcp", "Udp", "Icmp", "Esp", "Ah", "*"}},
		{"--source-address-prefixes", "sourceAddressPrefixes", T::List, false, "default *"},
		{"--source-port-ranges", "sourcePortRanges", T::List, false, "default *"},
		{"--destination-address-prefixes", "destinationAddressPrefixes", T::List, false, "default *"},
		{"--destination-port-ranges", "destinationPortRanges", T::List, false, "default 80"},
		{"--description", "description", T::Str, false, "up to 140 characters"}};
	auto create_rule = rule_flags;
	create_rule[2].required = true;
	leaf(rule, "create", "network.nsg.rule.create", Kind::Rule, create_rule, "create a rule");
	leaf(rule, "update", "network.nsg.rule.update", Kind::Rule, rule_flags, "update a rule");
	leaf(rule, "delete", "network.nsg.rule.delete", Kind::None, {nsg_name, name}, "delete a rule");
	leaf(rule, "show", "network.nsg.rule.show", Kind::Rule, {nsg_name, name}, "show a rule");
	leaf(rule, "list", "network.nsg.rule.list", Kind::Rule,
	     {nsg_name, {"--include-default", "includeDefault", T::Bool, false, "list the default rules too"}},
	     "list rules");

	auto *tag = group(network, "service-tag", "service tags");
	leaf(tag, "load", "network.service-tag.load", Kind::Tags,
	     {{"--file,-f", "file", T::File, true, "ServiceTags_Public.json"}}, "load the service tags file");

	auto *pe = group(network, "private-endpoint", "private endpoints");
	leaf(pe, "create", "network.private-endpoint.create", Kind::Pe,
	     {name,
	      {"--vnet-name", "vnetName", T::Str, false, "virtual network (unless --subnet is an id)"},
	      {"--subnet", "subnet", T::Str, true, "subnet name or id"},
	      {"--private-ip-address", "privateIpAddress", T::Str, true, "the endpoint's IP"},
	      {"--private-connection-resource-id", "privateConnectionResourceId", T::Str, true,
	       "target server (name or id)"},
	      {"--group-id", "groupId", T::Str, true, "mysqlServer"},
	      {"--manual-request", "manualRequest", T::Bool, false, "the connection waits for approval"},
	      {"--connection-name", "connectionName", T::Str, false, "default <name>.<uuid>"},
	      {"--request-message", "requestMessage", T::Str, false, "message for a manual request"}},
	     "create a private endpoint");
	leaf(pe, "delete", "network.private-endpoint.delete", Kind::None, {name}, "delete a private endpoint");
	leaf(pe, "show", "network.private-endpoint.show", Kind::Pe, {name}, "show a private endpoint");
	leaf(pe, "list", "network.private-endpoint.list", Kind::Pe, {}, "list private endpoints");

	auto *mysql = group(&app, "mysql", "MySQL servers");
	auto *server = group(mysql, "server", "MySQL servers");
	std::vector<Flag> server_flags{
		name,
		{"--public-ip", "publicIp", T::Str, false, "public endpoint address (port 3306)"},
		{"--backend", "backend", T::List, false, "IP[:PORT[:WEIGHT]] of a server node (repeatable)"},
		{"--public-network-access", "publicNetworkAccess", T::Str, false, "Enabled|Disabled (default Enabled)",
		 {"Enabled", "Disabled"}}};
	auto create_server = server_flags;
	create_server[1].required = true;
	leaf(server, "create", "mysql.server.create", Kind::Server, create_server, "create a server");
	leaf(server, "update", "mysql.server.update", Kind::Server, server_flags, "update a server");
	leaf(server, "delete", "mysql.server.delete", Kind::None, {name}, "delete a server");
	leaf(server, "show", "mysql.server.show", Kind::Server, {name}, "show a server");
	leaf(server, "list", "mysql.server.list", Kind::Server, {}, "list servers");

	const Flag server_name{"--server-name,-s", "serverName", T::Str, true, "server"};
	auto *fw = group(server, "firewall-rule", "server firewall rules");
	std::vector<Flag> fw_flags{server_name,
				   name,
				   {"--start-ip-address", "startIpAddress", T::Str, true, "first IPv4 address"},
				   {"--end-ip-address", "endIpAddress", T::Str, true, "last IPv4 address"}};
	auto update_fw = fw_flags;
	update_fw[2].required = update_fw[3].required = false;
	leaf(fw, "create", "mysql.server.firewall-rule.create", Kind::Fw, fw_flags, "create a firewall rule");
	leaf(fw, "update", "mysql.server.firewall-rule.update", Kind::Fw, update_fw, "update a firewall rule");
	leaf(fw, "delete", "mysql.server.firewall-rule.delete", Kind::None, {server_name, name}, "delete a rule");
	leaf(fw, "show", "mysql.server.firewall-rule.show", Kind::Fw, {server_name, name}, "show a rule");
	leaf(fw, "list", "mysql.server.firewall-rule.list", Kind::Fw, {server_name}, "list rules");

	auto *vnr = group(server, "vnet-rule", "server virtual network rules");
	leaf(vnr, "create", "mysql.server.vnet-rule.create", Kind::Vnr,
	     {server_name, name, {"--vnet-name", "vnetName", T::Str, false, "virtual network (unless --subnet is an id)"},
	      {"--subnet", "subnet", T::Str, true, "subnet name or id"}},
	     "create a VNet rule");
	leaf(vnr, "delete", "mysql.server.vnet-rule.delete", Kind::None, {server_name, name}, "delete a VNet rule");
	leaf(vnr, "show", "mysql.server.vnet-rule.show", Kind::Vnr, {server_name, name}, "show a VNet rule");
	leaf(vnr, "list", "mysql.server.vnet-rule.list", Kind::Vnr, {server_name}, "list VNet rules");

	auto *pec = group(server, "private-endpoint-connection", "private endpoint connections");
	const Flag desc{"--description", "description", T::Str, false, "comment"};
	leaf(pec, "approve", "mysql.server.private-endpoint-connection.approve", Kind::Pec, {server_name, name, desc},
	     "approve a connection");
	leaf(pec, "reject", "mysql.server.private-endpoint-connection.reject", Kind::Pec, {server_name, name, desc},
	     "reject a connection");
	leaf(pec, "delete", "mysql.server.private-endpoint-connection.delete", Kind::None, {server_name, name},
	     "delete a connection (the endpoint stays, Disconnected)");
	leaf(pec, "show", "mysql.server.private-endpoint-connection.show", Kind::Pec, {server_name, name},
	     "show a connection");
	leaf(pec, "list", "mysql.server.private-endpoint-connection.list", Kind::Pec, {server_name},
	     "list connections");

	leaf(&app, "apply", "apply", Kind::State, {{"--file,-f", "file", T::File, true, "state file (ARM JSON)"}},
	     "replace the whole state, atomically");
	leaf(&app, "export", "export", Kind::State, {}, "print the whole state");
	leaf(&app, "explain", "explain", Kind::Explain,
	     {{"--src", "src", T::Str, true, "source IP"},
	      {"--dst", "dst", T::Str, true, "destination IP"},
	      {"--protocol", "protocol", T::Str, true, "Tcp|Udp|Icmp|Esp|Ah"},
	      {"--sport", "sport", T::Int, false, "source port (Tcp, Udp; default 0)"},
	      {"--dport", "dport", T::Int, false, "destination port (Tcp, Udp; default 0)"},
	      {"--vnet-name", "vnetName", T::Str, false, "the packet's VNet (default: the one holding --src)"}},
	     "what the live generation does with a new flow");
	leaf(&app, "stats", "stats", Kind::Stats, {}, "counters");
	leaf(&app, "status", "status", Kind::Stats, {},
	     "the live generation, object counts, and each dataplane's acknowledged generation");
	leaf(&app, "flows", "flows", Kind::Flows,
	     {{"--top", "top", T::Int, false, "list at most this many flows (default 1000)"}}, "the flow table");
}

// ---- the request ----

std::string absolute(const std::string &p) { return std::filesystem::absolute(p).lexically_normal().string(); }

// A document flag: sent inline when it fits the message cap, else as a path
// for the agent to read.
bool document_param(const Leaf &l, const std::string &path, json &params, std::string &error)
{
	const char *inline_key = l.method == "apply" ? "state" : "serviceTags";
	auto doc = lg::read_json_file(path);
	if (!doc) {
		error = doc.error();
		return false;
	}
	if (doc->dump().size() + 512 < kMaxMessage)
		params[inline_key] = *doc;
	else
		params["file"] = absolute(path);
	return true;
}

bool build_params(const Leaf &l, json &params, std::string &error)
{
	params = json::object();
	size_t s = 0, li = 0, in = 0;
	for (size_t i = 0; i < l.flags.size(); i++) {
		const Flag &f = l.flags[i];
		const CLI::Option *o = l.opts[i];
		bool given = o->count() > 0;
		switch (f.type) {
		case T::Str:
			if (given)
				params[f.key] = l.strs[s];
			s++;
			break;
		case T::File:
			if (given && !document_param(l, l.strs[s], params, error))
				return false;
			s++;
			break;
		case T::Bool:
			if (given)
				// A bare flag arrives as no value or "".
				params[f.key] = l.lists[li].empty() || l.lists[li].back().empty() ||
						lg::iequals(l.lists[li].back(), "true");
			li++;
			break;
		case T::List:
			if (given)
				params[f.key] = l.lists[li];
			li++;
			break;
		case T::Int:
			if (given)
				params[f.key] = l.ints[in];
			in++;
			break;
		}
	}
	return true;
}

// One request, one reply line.
bool call(const std::string &path, const json &request, json &reply, std::string &error)
{
	sockaddr_un sa{};
	sa.sun_family = AF_UNIX;
	if (path.size() >= sizeof(sa.sun_path)) {
		error = "socket path " + path + " is too long";
		return false;
	}
	std::memcpy(sa.sun_path, path.c_str(), path.size() + 1);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, reinterpret_cast<sockaddr *>(&sa), sizeof(sa)) != 0) {
		int e = errno;
		error = "cannot connect to linkgated at " + path + ": " + std::strerror(e) +
			(e == ENOENT || e == ECONNREFUSED ? " (is linkgated running? --socket or LINKGATE_SOCKET name another socket)"
			 : e == EACCES			  ? " (the socket is 0600: run as root or as linkgated's user)"
							  : "");
		if (fd >= 0)
			close(fd);
		return false;
	}
	// A commit is short; an agent silent this long is stuck, not busy.
	timeval tv{120, 0};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)); // a large document to an agent that stopped reading
	std::string line = request.dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
	for (size_t off = 0; off < line.size();) {
		ssize_t n = send(fd, line.data() + off, line.size() - off, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break; // the agent may have answered and closed (e.g. a refusal): read it
		off += size_t(n);
	}
	std::string in;
	char buf[65536];
	for (;;) {
		size_t nl = in.find('\n');
		if (nl != std::string::npos) {
			in.resize(nl);
			break;
		}
		ssize_t n = recv(fd, buf, sizeof(buf), 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			close(fd);
			error = "linkgated at " + path + " did not answer within " + std::to_string(tv.tv_sec) + " s";
			return false;
		}
		if (n <= 0)
			break;
		in.append(buf, size_t(n));
	}
	close(fd);
	if (in.empty()) {
		error = "linkgated at " + path + " closed the connection without a reply";
		return false;
	}
	// Depth-checked: copies and dumps of a json value recurse.
	auto r = lg::parse_json_text(in, "unreadable reply from linkgated at " + path);
	if (!r) {
		error = r.error();
		return false;
	}
	reply = std::move(*r);
	return true;
}

// What makes `r` other than a JSON-RPC 2.0 response to request `id`, or "".
// An error the agent raised before it read our id (a parse error, too many
// connections) carries id null, as JSON-RPC says.
std::string bad_reply(const json &r, int64_t id)
{
	if (!r.is_object())
		return "not a JSON object";
	if (auto v = r.find("jsonrpc"); v == r.end() || *v != "2.0")
		return "jsonrpc is not \"2.0\"";
	auto res = r.find("result"), er = r.find("error");
	if ((res == r.end()) == (er == r.end()))
		return "not exactly one of result and error";
	auto i = r.find("id");
	bool ours = i != r.end() && i->is_number_integer() && *i == id;
	if (!ours && !(er != r.end() && i != r.end() && i->is_null()))
		return "not the reply to request " + std::to_string(id);
	if (er != r.end()) {
		auto code = er->find("code"), message = er->find("message");
		if (!er->is_object() || code == er->end() || !code->is_number_integer() || message == er->end() ||
		    !message->is_string())
			return "error is not {code: integer, message: string}";
	}
	return "";
}

// ---- table output ----

std::string cell(const json &v)
{
	if (v.is_null())
		return "";
	if (v.is_string())
		return v.get<std::string>();
	if (v.is_boolean())
		return v.get<bool>() ? "True" : "False"; // as az's tables print them
	if (v.is_array()) {
		std::string out;
		for (const auto &e : v)
			out += (out.empty() ? "" : ", ") + cell(e);
		return out;
	}
	if (v.is_object()) // a reference: its name
		if (auto id = v.find("id"); id != v.end() && id->is_string())
			return lg::ref_name(id->get<std::string>());
	return v.dump(-1, ' ', false, json::error_handler_t::replace);
}

// The value at `pointer`, null when it is absent (or j is not a container).
json at(const json &j, const char *pointer)
{
	json::json_pointer p(pointer);
	return j.contains(p) ? j[p] : json(nullptr);
}

// The number of elements of a list, else the value itself.
std::string count(const json &v)
{
	if (v.is_null())
		return "0";
	return v.is_array() || v.is_object() ? std::to_string(v.size()) : cell(v);
}

// Each element of a list (a value that is not a list counts as one).
std::string each(const json &v, const std::function<std::string(const json &)> &f)
{
	std::string out;
	for (const json &e : v.is_array() ? v : json::array({v}))
		if (!e.is_null())
			out += (out.empty() ? "" : ", ") + f(e);
	return out;
}

using Column = std::pair<const char *, std::function<std::string(const json &)>>;

Column col(const char *header, const char *pointer)
{
	return {header, [pointer](const json &j) { return cell(at(j, pointer)); }};
}

// The plural field when set, else the singular one (az prints one of them).
Column pair_col(const char *header, const char *one, const char *many)
{
	return {header, [one, many](const json &j) {
			std::string m = cell(at(j, many));
			return m.empty() ? cell(at(j, one)) : m;
		}};
}

// "vnet/subnet" of a subnet id: subnet names repeat across VNets.
std::string subnet_of(const json &id)
{
	auto r = lg::parse_subnet_ref(id.is_string() ? id.get<std::string>() : "");
	return r ? r->first + "/" + r->second : "";
}

// A backend as --backend takes it: address:port[:weight], IPv6 in brackets.
std::string backend(const json &b)
{
	if (!b.is_object())
		return cell(b);
	json a = at(b, "/address"), port = at(b, "/port"), weight = at(b, "/weight");
	std::string out = cell(a);
	if (a.is_string() && out.find(':') != std::string::npos)
		out = "[" + out + "]";
	if (!port.is_null())
		out += ":" + cell(port);
	if (!weight.is_null() && weight != 1)
		out += ":" + cell(weight);
	return out;
}

std::vector<Column> columns(Kind k)
{
	switch (k) {
	case Kind::Vnet:
		return {col("Name", "/name"), col("Prefixes", "/addressSpace/addressPrefixes"), col("Vni", "/vni"),
			{"NumSubnets", [](const json &j) { return count(at(j, "/subnets")); }}};
	case Kind::Subnet:
		return {col("Name", "/name"), col("AddressPrefix", "/addressPrefix"),
			col("NetworkSecurityGroup", "/networkSecurityGroup"),
			{"ServiceEndpoints",
			 [](const json &j) {
				 return each(at(j, "/serviceEndpoints"), [](const json &e) { return cell(at(e, "/service")); });
			 }},
			col("PrivateEndpointNetworkPolicies", "/privateEndpointNetworkPolicies")};
	case Kind::Nic:
		return {col("Name", "/name"), col("PrivateIpAddress", "/ipConfigurations/0/privateIPAddress"),
			{"Subnet", [](const json &j) { return subnet_of(at(j, "/ipConfigurations/0/subnet/id")); }},
			col("NetworkSecurityGroup", "/networkSecurityGroup")};
	case Kind::Nsg:
		return {col("Name", "/name"), col("FlushConnection", "/flushConnection"),
			{"NumRules", [](const json &j) { return count(at(j, "/securityRules")); }},
			{"Subnets",
			 [](const json &j) {
				 return each(at(j, "/subnets"), [](const json &s) {
					 std::string vs = subnet_of(at(s, "/id"));
					 return vs.empty() ? cell(s) : vs;
				 });
			 }},
			col("NetworkInterfaces", "/networkInterfaces")};
	case Kind::Rule:
		return {col("Name", "/name"),
			col("Priority", "/priority"),
			col("Direction", "/direction"),
			col("Access", "/access"),
			col("Protocol", "/protocol"),
			pair_col("SourceAddressPrefixes", "/sourceAddressPrefix", "/sourceAddressPrefixes"),
			pair_col("SourcePortRanges", "/sourcePortRange", "/sourcePortRanges"),
			pair_col("DestinationAddressPrefixes", "/destinationAddressPrefix", "/destinationAddressPrefixes"),
			pair_col("DestinationPortRanges", "/destinationPortRange", "/destinationPortRanges")};
	case Kind::Server:
		return {col("Name", "/name"), col("PublicIp", "/publicIp"),
			col("PublicNetworkAccess", "/publicNetworkAccess"),
			{"Backends", [](const json &j) { return each(at(j, "/backends"), backend); }},
			{"FirewallRules", [](const json &j) { return count(at(j, "/firewallRules")); }},
			{"VnetRules", [](const json &j) { return count(at(j, "/virtualNetworkRules")); }},
			{"Connections", [](const json &j) { return count(at(j, "/privateEndpointConnections")); }}};
	case Kind::Fw:
		return {col("Name", "/name"), col("StartIpAddress", "/startIpAddress"), col("EndIpAddress", "/endIpAddress")};
	case Kind::Vnr:
		return {col("Name", "/name"),
			{"Subnet", [](const json &j) { return subnet_of(at(j, "/virtualNetworkSubnetId")); }},
			col("State", "/state")};
	case Kind::Pe: {
		auto conn = [](const json &j, const char *p) {
			json c = at(j, "/privateLinkServiceConnections/0");
			if (c.is_null())
				c = at(j, "/manualPrivateLinkServiceConnections/0");
			return c.is_null() ? json(nullptr) : at(c, p);
		};
		return {col("Name", "/name"), col("PrivateIpAddress", "/ipConfigurations/0/privateIPAddress"),
			{"Subnet", [](const json &j) { return subnet_of(at(j, "/subnet/id")); }},
			{"Server", [conn](const json &j) { return lg::ref_name(cell(conn(j, "/privateLinkServiceId"))); }},
			{"Connection", [conn](const json &j) { return cell(conn(j, "/name")); }},
			{"Status",
			 [conn](const json &j) { return cell(conn(j, "/privateLinkServiceConnectionState/status")); }}};
	}
	case Kind::Pec:
		return {col("Name", "/name"), col("PrivateEndpoint", "/privateEndpoint"),
			col("Status", "/privateLinkServiceConnectionState/status"),
			col("Description", "/privateLinkServiceConnectionState/description")};
	case Kind::Tags:
		return {col("ChangeNumber", "/changeNumber"), col("Cloud", "/cloud"), col("Tags", "/count")};
	case Kind::Flows:
		return {col("Original", "/original"), col("Reply", "/reply"), col("State", "/state"), col("Kind", "/kind"),
			col("Object", "/object"), col("Backend", "/backend"), col("Generation", "/generation"),
			col("Dataplane", "/dataplane")};
	default:
		return {};
	}
}

// Cells are escaped here, so that one object is one row (printable()).
void print_table(std::vector<std::string> headers, std::vector<std::vector<std::string>> rows)
{
	for (auto &h : headers)
		h = printable(h);
	for (auto &r : rows)
		for (auto &c : r)
			c = printable(c);
	std::vector<size_t> w(headers.size());
	for (size_t c = 0; c < headers.size(); c++) {
		w[c] = headers[c].size();
		for (const auto &r : rows)
			w[c] = std::max(w[c], r[c].size());
	}
	auto line = [&](const std::vector<std::string> &cells) {
		std::string out;
		for (size_t c = 0; c < cells.size(); c++) {
			out += cells[c];
			if (c + 1 < cells.size())
				out += std::string(w[c] - cells[c].size() + 2, ' ');
		}
		while (!out.empty() && out.back() == ' ')
			out.pop_back();
		std::printf("%s\n", out.c_str());
	};
	line(headers);
	std::vector<std::string> dashes;
	for (size_t c = 0; c < headers.size(); c++)
		dashes.push_back(std::string(w[c], '-'));
	line(dashes);
	for (const auto &r : rows)
		line(r);
}

// Key/value rows for objects that are not a list of one kind.
void flatten(const std::string &prefix, const json &v, std::vector<std::vector<std::string>> &rows)
{
	if (v.is_object() && !v.empty()) {
		for (const auto &[k, x] : v.items())
			flatten(prefix.empty() ? k : prefix + "." + k, x, rows);
	} else if (v.is_array() && !v.empty() && v[0].is_object()) {
		for (size_t i = 0; i < v.size(); i++)
			flatten(prefix + "[" + std::to_string(i) + "]", v[i], rows);
	} else {
		rows.push_back({prefix, cell(v)});
	}
}

void print_result(Kind kind, const json &result, bool table)
{
	if (result.is_null())
		return; // az prints nothing for a delete
	if (!table) {
		std::printf("%s\n", terminal_safe_json(result.dump(2, ' ', false, json::error_handler_t::replace)).c_str());
		return;
	}
	json r = result;
	// az's create wrappers: {"newVNet": {...}}, {"NewNSG": {...}}, {"NewNIC": {...}}.
	if (r.is_object() && r.size() == 1)
		for (const char *w : {"newVNet", "NewNSG", "NewNIC"})
			if (r.contains(w))
				r = json(r[w]);
	if (kind == Kind::State) {
		std::vector<std::vector<std::string>> rows;
		for (const auto &[k, v] : r.items())
			rows.push_back({k, count(k == "serviceTags" ? at(v, "/values") : v)});
		print_table({"Collection", "Count"}, rows);
		return;
	}
	auto cols = columns(kind);
	if (cols.empty()) { // explain, stats: one field per row
		std::vector<std::vector<std::string>> rows;
		flatten("", r, rows);
		print_table({"Field", "Value"}, rows);
		return;
	}
	std::vector<std::string> headers;
	for (const auto &c : cols)
		headers.push_back(c.first);
	std::vector<std::vector<std::string>> rows;
	for (const json &item : r.is_array() ? r : json::array({r})) {
		std::vector<std::string> row;
		for (const auto &c : cols)
			row.push_back(c.second(item));
		rows.push_back(std::move(row));
	}
	print_table(headers, rows);
}

int exit_code(int64_t rpc_code)
{
	switch (rpc_code) {
	case kNotFound:
		return kExitNotFound;
	case kInvalidParams:
		return kExitUsage;
	default:
		return kExitRejected;
	}
}

int run(int argc, char **argv)
{
	CLI::App app{"linkgatectl: az-style client of linkgated"};
	// CLI11's messages quote what was typed: escaped too, set before the
	// subcommands, which copy it.
	app.failure_message([](const CLI::App *a, const CLI::Error &e) {
		std::string s = CLI::FailureMessage::simple(a, e), what = e.what();
		return s.rfind(what, 0) == 0 ? printable(what) + s.substr(what.size()) : s;
	});
	app.require_subcommand(1);
	std::string socket_path = "/run/linkgate/linkgated.sock", output = "json";
	app.add_option("--socket", socket_path, "linkgated's control socket")
		->envname("LINKGATE_SOCKET")
		->capture_default_str();
	app.add_option("--output,-o", output, "json (ARM, as az prints it) or table")
		->check(CLI::IsMember({"json", "table"}))
		->capture_default_str();
	// az's global arguments, so that a command pasted from az runs: one
	// host is one resource group of one subscription, and linkgatectl asks
	// no question for --yes to answer.
	std::string resource_group, subscription;
	bool yes = false;
	app.add_option("--resource-group,-g", resource_group, "accepted as az's, not used: one host, one group")
		->group("az compatibility");
	app.add_option("--subscription", subscription, "accepted as az's, not used")->group("az compatibility");
	app.add_flag("--yes,-y", yes, "accepted as az's: nothing is asked")->group("az compatibility");
	build_tree(app);
	try {
		app.parse(argc, argv);
	} catch (const CLI::ParseError &e) {
		return app.exit(e) == 0 ? kExitOk : kExitUsage;
	}

	const Leaf *l = nullptr;
	for (const auto &x : g_leaves)
		if (x.cmd->parsed())
			l = &x;
	if (!l)
		return fail(kExitUsage, "no command given (see --help)");
	json params;
	std::string error;
	if (!build_params(*l, params, error))
		return fail(kExitRejected, error);
	// flows: one more than shown, so that a table of exactly `top` flows
	// is not called cut (the agent's range ends at kFlowsMaxTop).
	int64_t top = 0;
	json sent = params;
	if (l->kind == Kind::Flows) {
		top = params.contains("top") && params["top"].is_number_integer() ? params["top"].get<int64_t>()
										 : kFlowsDefaultTop;
		if (top >= 1 && top < kFlowsMaxTop)
			sent["top"] = top + 1;
	}
	json request{{"jsonrpc", "2.0"}, {"id", kRequestId}, {"method", l->method}, {"params", sent}};
	json reply;
	if (!call(socket_path, request, reply, error))
		return fail(kExitRejected, error);
	// Anything else is an agent we cannot use, as one we cannot reach.
	if (std::string bad = bad_reply(reply, kRequestId); !bad.empty())
		return fail(kExitRejected, "malformed reply from linkgated at " + socket_path + ": " + bad);
	if (auto e = reply.find("error"); e != reply.end())
		return fail(exit_code(e->at("code").get<int64_t>()), e->at("message").get<std::string>());
	bool cut = false;
	if (l->kind == Kind::Flows && reply["result"].is_array() && top >= 1) {
		json &fl = reply["result"];
		cut = int64_t(fl.size()) > top || (top == kFlowsMaxTop && int64_t(fl.size()) >= top);
		if (int64_t(fl.size()) > top)
			fl.erase(fl.begin() + top, fl.end());
	}
	try {
		print_result(l->kind, reply.at("result"), output == "table");
	} catch (const json::exception &e) { // a result of a shape the table does not expect
		return fail(kExitRejected, std::string("cannot print the result: ") + e.what());
	}
	// A listing cut at --top says so where a person sees it (stdout stays
	// the result alone); `stats` counts every flow.
	if (cut)
		std::fprintf(stderr, "linkgatectl: the first %lld flows; --top for more, stats for the count\n",
			     static_cast<long long>(top));
	// `export > backup.json` on a full disk must not look like a backup.
	if (std::fflush(stdout) != 0 || std::ferror(stdout))
		return fail(kExitRejected, std::string("cannot write the result: ") + std::strerror(errno));
	return kExitOk;
}

} // namespace

int main(int argc, char **argv)
{
	try {
		return run(argc, argv);
	} catch (const std::exception &e) { // e.g. out of memory for a reply: a line, not an abort
		return fail(kExitRejected, std::string("internal error: ") + e.what());
	}
}
