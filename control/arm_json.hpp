// ARM-shaped JSON for every object of SPEC §2. Output looks like `az ... show`
// (properties flattened, camelCase, synthetic ids); input takes that shape or
// raw ARM with a `properties` envelope, references as ARM ids or bare names.
// Readers check JSON types only: values are kept as written (enum words
// canonicalised) and judged by validate.hpp. Errors name the object and field,
// e.g. "networkSecurityGroups/web/securityRules/ssh: priority must be an integer".
#pragma once

#include <nlohmann/json.hpp>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "model.hpp"
#include "result.hpp"

namespace lg {

inline constexpr const char *kSubscriptionId = "00000000-0000-0000-0000-000000000000";
inline constexpr const char *kResourceGroup = "linkgate";

// Synthetic ARM ids: /subscriptions/<0...0>/resourceGroups/linkgate/providers/<provider_path>.
std::string resource_id(const std::string &provider_path);
std::string vnet_id(const std::string &vnet);
std::string subnet_id(const std::string &vnet, const std::string &subnet);
std::string nsg_id(const std::string &nsg);
std::string local_network_gateway_id(const std::string &gateway);
std::string nic_id(const std::string &nic);
std::string private_endpoint_id(const std::string &endpoint);
std::string server_id(const std::string &server);
std::string pec_id(const std::string &server, const std::string &connection);

// A reference given as an ARM id or a bare name: its last path segment.
std::string ref_name(const std::string &ref);
// The name in an id of one type (".../<type>/<name>", the type compared
// without case) or a bare name; nullopt for an id of another type.
std::optional<std::string> typed_ref_name(const std::string &ref, std::string_view type);
// A subnet reference: ".../virtualNetworks/<vnet>/subnets/<subnet>" or
// "<vnet>/<subnet>"; a lone subnet name is an error (the VNet is ambiguous).
Result<std::pair<std::string, std::string>> parse_subnet_ref(const std::string &ref);

// A private endpoint connection as the server lists it (SPEC §2 "PEC").
struct PrivateEndpointConnection {
	std::string name;
	std::string server;          // "" when neither the id nor the caller said
	std::string privateEndpoint; // endpoint name
	ConnectionState state;
	bool operator==(const PrivateEndpointConnection &) const = default;
};

nlohmann::json security_rule_to_json(const SecurityRule &r, const std::string &nsg, bool is_default = false);
Result<SecurityRule> security_rule_from_json(const nlohmann::json &j, const std::string &nsg);

// With a State, the NSG also lists the subnets and NICs that use it (as az does).
nlohmann::json nsg_to_json(const NetworkSecurityGroup &n, const State *s = nullptr);
Result<NetworkSecurityGroup> nsg_from_json(const nlohmann::json &j);

nlohmann::json subnet_to_json(const Subnet &sn, const std::string &vnet);
Result<Subnet> subnet_from_json(const nlohmann::json &j, const std::string &vnet);

nlohmann::json vnet_to_json(const VirtualNetwork &v);
Result<VirtualNetwork> vnet_from_json(const nlohmann::json &j);

nlohmann::json local_network_gateway_to_json(const LocalNetworkGateway &g);
Result<LocalNetworkGateway> local_network_gateway_from_json(const nlohmann::json &j);

nlohmann::json nic_to_json(const NetworkInterface &n);
Result<NetworkInterface> nic_from_json(const nlohmann::json &j);

// With a State, customDnsConfigs carries the target server's FQDN.
nlohmann::json private_endpoint_to_json(const PrivateEndpoint &pe, const State *s = nullptr);
Result<PrivateEndpoint> private_endpoint_from_json(const nlohmann::json &j);

// `az mysql server private-endpoint-connection show` of the endpoint's connection.
nlohmann::json pec_to_json(const PrivateEndpoint &pe);
Result<PrivateEndpointConnection> pec_from_json(const nlohmann::json &j, const std::string &server = "");
// Puts a server-side connection entry onto its private endpoint: name, state,
// connectionPresent = true. Errors when the endpoint does not exist or targets
// another server.
Status apply_pec(State &s, const PrivateEndpointConnection &c);

nlohmann::json firewall_rule_to_json(const FirewallRule &r, const std::string &server);
Result<FirewallRule> firewall_rule_from_json(const nlohmann::json &j, const std::string &server);
nlohmann::json vnet_rule_to_json(const VirtualNetworkRule &r, const std::string &server);
Result<VirtualNetworkRule> vnet_rule_from_json(const nlohmann::json &j, const std::string &server);

// privateEndpointConnections[] comes from the endpoints in s targeting the server.
nlohmann::json server_to_json(const MySqlServer &m, const State &s);
// Ignores privateEndpointConnections[]; read those with server_connections_from_json.
Result<MySqlServer> server_from_json(const nlohmann::json &j);
Result<std::vector<PrivateEndpointConnection>> server_connections_from_json(const nlohmann::json &j);

nlohmann::json service_tags_to_json(const ServiceTags &t);
Result<ServiceTags> service_tags_from_json(const nlohmann::json &j);

// {"virtualNetworks", "localNetworkGateways", "networkSecurityGroups",
//  "networkInterfaces", "privateEndpoints", "mysqlServers", "serviceTags"},
// every key optional, unknown keys an error.
nlohmann::json state_to_json(const State &s);
Result<State> state_from_json(const nlohmann::json &j);

// Limits of JSON read from files and the control socket: copies and
// destructors of a json value recurse, so a document a few hundred thousand
// levels deep would exhaust the stack.
inline constexpr size_t kMaxJsonDepth = 64;
inline constexpr uint64_t kMaxJsonFileBytes = 64ull << 20;
// The agent's own state file: what it commits it must be able to load again
// (no limit on NSGs or VNets bounds the state below kMaxJsonFileBytes).
inline constexpr uint64_t kMaxStateFileBytes = 1ull << 30;
// A JSON-RPC request id this process answers: a string, or a number within
// 64 bits. A larger integer parses as a double and would come back rounded
// (18446744073709551617 as 1.8446744073709552e+19); other numbers come back
// as the double they read as (JSON-RPC advises integer ids).
inline bool rpc_id_echoable(const nlohmann::json &id)
{
	return id.is_string() || id.is_number_integer() ||
	       (id.is_number_float() && id.get<double>() < 0x1p63 && id.get<double>() > -0x1p63);
}
// Deepest nesting of arrays and objects in JSON text (strings skipped).
size_t nesting_depth(std::string_view text);
// JSON text that nests at most kMaxJsonDepth levels; errors start with `what`.
Result<nlohmann::json> parse_json_text(std::string_view text, const std::string &what);
// json::parse, but an object with a key twice throws DuplicateKey (nlohmann
// would keep the last silently). Parse errors throw as json::parse does.
struct DuplicateKey : std::runtime_error {
	using std::runtime_error::runtime_error;
};
nlohmann::json parse_json_unique_keys(std::string_view text);
// A regular file of at most max_bytes, read whole; errors name the path.
Result<std::string> read_text_file(const std::string &path, uint64_t max_bytes);
// A regular JSON file of at most max_bytes; errors name the path, and the
// line and column for bad JSON.
Result<nlohmann::json> read_json_file(const std::string &path, uint64_t max_bytes = kMaxJsonFileBytes);
Result<State> load_state_file(const std::string &path);
Result<ServiceTags> load_service_tags_file(const std::string &path);
// Atomic: temp file in the same directory, fsync, rename, fsync the directory.
// *renamed (when given) says whether the new file is in place, even on failure.
Status save_state_file(const std::string &path, const State &s, bool durable = true, bool *renamed = nullptr);
// text into path by a 0600 temporary file and a rename (fsynced if durable:
// the file before the rename, its directory after; only that last fsync can
// fail with the new file in place).
Status write_file_atomic(const std::string &path, const std::string &text, bool durable, bool *renamed = nullptr);

} // namespace lg
