//! go-dockerclient's `docker.Container` as of its v1.7 releases (logspout 3.2.14 builds with
//! v1.7.0), transcribed from its `container.go` as a table: every struct with its Go field names, JSON keys, `omitempty` and types, in the Go
//! declaration order that `json.Marshal` and `fmt` follow.
//!
//! The table is text in Go's own notation, parsed once; a line is `GoName type [JsonKey] [!]`,
//! where the key defaults to the Go name and `!` marks a field without `omitempty`.

use super::*;
use std::sync::OnceLock;

const SCHEMA: &str = "
Container
ID string Id !
Created time
Path string
Args []string
Config *Config
State State
Image string
Node *SwarmNode
NetworkSettings *NetworkSettings
SysInitPath string
ResolvConfPath string
HostnamePath string
HostsPath string
LogPath string
Name string
Driver string
Mounts []Mount
Volumes map[string]string
VolumesRW map[string]bool
HostConfig *HostConfig
ExecIDs []string
GraphDriver *GraphDriver
RestartCount int
AppArmorProfile string
MountLabel string
ProcessLabel string
Platform string
SizeRw int64
SizeRootFs int64

State
Status string
Running bool
Paused bool
Restarting bool
OOMKilled bool
RemovalInProgress bool
Dead bool
Pid int
ExitCode int
Error string
StartedAt time
FinishedAt time
Health Health

Health
Status string
FailingStreak int
Log []HealthCheck

HealthCheck
Start time
End time
ExitCode int
Output string

Config
Hostname string
Domainname string
User string
Memory int64
MemorySwap int64
MemoryReservation int64
KernelMemory int64
CPUShares int64 CpuShares
CPUSet string Cpuset
PortSpecs []string
ExposedPorts map[Port]struct{}
PublishService string
StopSignal string
StopTimeout int
Env []string
Cmd []string Cmd !
Shell []string
Healthcheck *HealthConfig
DNS []string Dns
Image string
Volumes map[string]struct{}
VolumeDriver string
WorkingDir string
MacAddress string
Entrypoint []string Entrypoint !
SecurityOpts []string
OnBuild []string
Mounts []Mount
Labels map[string]string
AttachStdin bool
AttachStdout bool
AttachStderr bool
ArgsEscaped bool
Tty bool
OpenStdin bool
StdinOnce bool
NetworkDisabled bool
VolumesFrom string

HealthConfig
Test []string
Interval duration
Timeout duration
StartPeriod duration
Retries int

Mount
Name string Name !
Source string Source !
Destination string Destination !
Driver string Driver !
Mode string Mode !
RW bool RW !

SwarmNode
ID string
IP string
Addr string
Name string
CPUs int64
Memory int64
Labels map[string]string

GraphDriver
Name string
Data map[string]string

NetworkSettings
Networks map[string]ContainerNetwork
IPAddress string
IPPrefixLen int
MacAddress string
Gateway string
Bridge string
PortMapping map[string]map[string]string
Ports map[Port][]PortBinding
NetworkID string
EndpointID string
SandboxKey string
GlobalIPv6Address string
GlobalIPv6PrefixLen int
IPv6Gateway string
LinkLocalIPv6Address string
LinkLocalIPv6PrefixLen int
SecondaryIPAddresses []string
SecondaryIPv6Addresses []string

ContainerNetwork
Aliases []string
MacAddress string
GlobalIPv6PrefixLen int
GlobalIPv6Address string
IPv6Gateway string
IPPrefixLen int
IPAddress string
Gateway string
EndpointID string
NetworkID string

PortBinding
HostIP string HostIp
HostPort string

HostConfig
Binds []string
CapAdd []string
CapDrop []string
Capabilities []string
GroupAdd []string
ContainerIDFile string
LxcConf []KeyValuePair
PortBindings map[Port][]PortBinding
Links []string
DNS []string Dns
DNSOptions []string DnsOptions
DNSSearch []string DnsSearch
ExtraHosts []string
VolumesFrom []string
UsernsMode string
NetworkMode string
IpcMode string
Isolation string
ConsoleSize [2]int
PidMode string
UTSMode string
RestartPolicy RestartPolicy
Devices []Device
DeviceCgroupRules []string
DeviceRequests []DeviceRequest
LogConfig LogConfig
SecurityOpt []string
CgroupnsMode string
Cgroup string
CgroupParent string
Memory int64
MemoryReservation int64
KernelMemory int64
MemorySwap int64
CPUShares int64 CpuShares
CPUSet string Cpuset
CPUSetCPUs string CpusetCpus
CPUSetMEMs string CpusetMems
CPUQuota int64 CpuQuota
CPUPeriod int64 CpuPeriod
CPURealtimePeriod int64 CpuRealtimePeriod
CPURealtimeRuntime int64 CpuRealtimeRuntime
NanoCPUs int64 NanoCpus
BlkioWeight int64
BlkioWeightDevice []BlockWeight
BlkioDeviceReadBps []BlockLimit
BlkioDeviceReadIOps []BlockLimit
BlkioDeviceWriteBps []BlockLimit
BlkioDeviceWriteIOps []BlockLimit
Ulimits []ULimit
VolumeDriver string
OomScoreAdj int
MemorySwappiness *int64
PidsLimit *int64
OOMKillDisable *bool OomKillDisable
ShmSize int64
Tmpfs map[string]string
StorageOpt map[string]string
Sysctls map[string]string
CPUCount int64 CpuCount
CPUPercent int64 CpuPercent
IOMaximumBandwidth int64
IOMaximumIOps int64
Mounts []HostMount
MaskedPaths []string
ReadonlyPaths []string
Runtime string
Init bool
Privileged bool
PublishAllPorts bool
ReadonlyRootfs bool
AutoRemove bool

KeyValuePair
Key string
Value string

RestartPolicy
Name string
MaximumRetryCount int

Device
PathOnHost string
PathInContainer string
CgroupPermissions string

DeviceRequest
Driver string
Count int
DeviceIDs []string
Capabilities [][]string
Options map[string]string

LogConfig
Type string
Config map[string]string

BlockWeight
Path string
Weight string

BlockLimit
Path string
Rate int64

ULimit
Name string
Soft int64
Hard int64

HostMount
Target string
Source string
Type string
ReadOnly bool
BindOptions *BindOptions
VolumeOptions *VolumeOptions
TempfsOptions *TempfsOptions TmpfsOptions

BindOptions
Propagation string

VolumeOptions
NoCopy bool
Labels map[string]string
DriverConfig VolumeDriverConfig

VolumeDriverConfig
Name string
Options map[string]string

TempfsOptions
SizeBytes int64
Mode int
";

/// The index of a type in [`Schema::types`].
pub(super) type TyId = u16;

/// A Go type of the container's model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum GoTy {
    /// `string`, and `docker.Port`.
    Str,
    Bool,
    Int,
    Int64,
    /// `time.Duration`: nanoseconds, printed as `1m30s`.
    Duration,
    Time,
    /// `struct{}`.
    Empty,
    Slice(TyId),
    Map(TyId, TyId),
    /// A struct of [`Schema::structs`].
    Struct(u16),
    /// A pointer to one.
    Ptr(u16),
    /// A pointer to another type (`*int64`).
    PtrTo(TyId),
    /// An array of that many elements (`[2]int`).
    Array(TyId, u8),
}

pub(super) struct GoField {
    pub(super) go: &'static str,
    pub(super) key: &'static str,
    pub(super) omitempty: bool,
    pub(super) ty: TyId,
}

pub(super) struct GoStruct {
    pub(super) fields: Vec<GoField>,
}

pub(super) struct Schema {
    /// Each type and its Go name (`*docker.HostConfig`, `map[string]string`…).
    pub(super) types: Vec<(GoTy, String)>,
    pub(super) structs: Vec<GoStruct>,
    /// `*docker.Container`, `*docker.Config` and `docker.State`.
    pub(super) container: TyId,
    pub(super) config: TyId,
    pub(super) state: TyId,
}

pub(super) fn schema() -> &'static Schema {
    static SCHEMA_CELL: OnceLock<Schema> = OnceLock::new();
    SCHEMA_CELL.get_or_init(parse_schema)
}

fn parse_schema() -> Schema {
    let blocks: Vec<Vec<&'static str>> =
        SCHEMA.trim().split("\n\n").map(|b| b.lines().map(str::trim).filter(|l| !l.is_empty()).collect()).collect();
    let names: Vec<&str> = blocks.iter().map(|b| b[0]).collect();
    let mut s = Schema { types: Vec::new(), structs: Vec::new(), container: 0, config: 0, state: 0 };
    s.structs.resize_with(names.len(), || GoStruct { fields: Vec::new() });
    for (i, block) in blocks.iter().enumerate() {
        for line in &block[1..] {
            let words: Vec<&'static str> = line.split_whitespace().collect();
            let ty = s.intern_text(words[1], &names);
            let key = words.get(2).filter(|w| **w != "!").copied().unwrap_or(words[0]);
            let omitempty = words.last() != Some(&"!");
            s.structs[i].fields.push(GoField { go: words[0], key, omitempty, ty });
        }
    }
    s.container = s.intern_text("*Container", &names);
    s.config = s.intern_text("*Config", &names);
    s.state = s.intern_text("State", &names);
    s
}

impl Schema {
    fn intern(&mut self, ty: GoTy, name: String) -> TyId {
        if let Some(i) = self.types.iter().position(|(t, n)| *t == ty && *n == name) {
            return i as TyId;
        }
        self.types.push((ty, name));
        (self.types.len() - 1) as TyId
    }

    fn intern_text(&mut self, text: &str, structs: &[&str]) -> TyId {
        let simple = match text {
            "string" => Some((GoTy::Str, "string")),
            "Port" => Some((GoTy::Str, "docker.Port")),
            "bool" => Some((GoTy::Bool, "bool")),
            "int" => Some((GoTy::Int, "int")),
            "int64" => Some((GoTy::Int64, "int64")),
            "duration" => Some((GoTy::Duration, "time.Duration")),
            "time" => Some((GoTy::Time, "time.Time")),
            "struct{}" => Some((GoTy::Empty, "struct {}")),
            _ => None,
        };
        if let Some((ty, name)) = simple {
            return self.intern(ty, name.to_string());
        }
        if let Some(rest) = text.strip_prefix('[').filter(|r| r.starts_with(|c: char| c.is_ascii_digit())) {
            let close = rest.find(']').expect("schema: array length");
            let n: u8 = rest[..close].parse().expect("schema: array length");
            let e = self.intern_text(&rest[close + 1..], structs);
            let name = format!("[{n}]{}", self.types[usize::from(e)].1);
            return self.intern(GoTy::Array(e, n), name);
        }
        if let Some(elem) = text.strip_prefix("[]") {
            let e = self.intern_text(elem, structs);
            let name = format!("[]{}", self.types[usize::from(e)].1);
            return self.intern(GoTy::Slice(e), name);
        }
        if let Some(rest) = text.strip_prefix("map[") {
            let close = rest.find(']').expect("schema: map key");
            let k = self.intern_text(&rest[..close], structs);
            let v = self.intern_text(&rest[close + 1..], structs);
            let name = format!("map[{}]{}", self.types[usize::from(k)].1, self.types[usize::from(v)].1);
            return self.intern(GoTy::Map(k, v), name);
        }
        let (ptr, name) = match text.strip_prefix('*') {
            Some(name) => (true, name),
            None => (false, text),
        };
        if ptr && !structs.contains(&name) {
            let e = self.intern_text(name, structs);
            let name = format!("*{}", self.types[usize::from(e)].1);
            return self.intern(GoTy::PtrTo(e), name);
        }
        let i = structs.iter().position(|s| *s == name).unwrap_or_else(|| panic!("schema: unknown type {text}")) as u16;
        if ptr {
            self.intern(GoTy::Ptr(i), format!("*docker.{name}"))
        } else {
            self.intern(GoTy::Struct(i), format!("docker.{name}"))
        }
    }

    /// `time.Time`.
    pub(super) fn types_time(&self) -> TyId {
        self.types.iter().position(|(t, _)| *t == GoTy::Time).unwrap_or(0) as TyId
    }

    pub(super) fn ty(&self, id: TyId) -> GoTy {
        self.types[usize::from(id)].0
    }

    pub(super) fn name(&self, id: TyId) -> &str {
        &self.types[usize::from(id)].1
    }

    /// The field `name` of the struct that `id` is or points to.
    pub(super) fn field(&self, id: TyId, name: &str) -> Option<&GoField> {
        match self.ty(id) {
            GoTy::Struct(s) | GoTy::Ptr(s) => self.structs[usize::from(s)].fields.iter().find(|f| f.go == name),
            _ => None,
        }
    }

    /// The Go field names of the struct that `id` is or points to, for messages.
    pub(super) fn field_names(&self, id: TyId) -> String {
        match self.ty(id) {
            GoTy::Struct(s) | GoTy::Ptr(s) => {
                let names: Vec<String> =
                    self.structs[usize::from(s)].fields.iter().map(|f| format!(".{}", f.go)).collect();
                names.join(", ")
            }
            _ => String::new(),
        }
    }
}

/// The compile-time type of a value of Go type `id`: the evaluator's own types for strings,
/// numbers, bools, times and `[]string`, [`Ty::Go`] for the rest.
pub(super) fn ty_of(id: TyId) -> Ty {
    let s = schema();
    match s.ty(id) {
        GoTy::Str => Ty::Str,
        GoTy::Bool => Ty::Bool,
        GoTy::Int => Ty::Int(IntTy::Int),
        GoTy::Int64 => Ty::Int(IntTy::Int64),
        GoTy::Duration => Ty::Int(IntTy::Duration),
        GoTy::Time => Ty::Time,
        GoTy::Slice(e) if s.ty(e) == GoTy::Str => Ty::List,
        _ => Ty::Go(id),
    }
}
