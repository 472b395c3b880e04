//! Which hypervisor or container the device runs in, told from the signs Linux leaves
//! (as `systemd-detect-virt` does), named the way RPort reports it: `KVM`, `VMWARE`,
//! `HYPERV`, `XEN`, `DOCKER`, `LXC`, ..., with the role `guest`.

/// What the system shows, read at the edge ([`observe`]); the decision ([`detect`]) is pure.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Signs {
    /// `/run/systemd/container`: the container manager systemd was told of.
    pub systemd_container: Option<String>,
    /// `/.dockerenv` exists.
    pub dockerenv: bool,
    /// `/run/.containerenv` exists (podman).
    pub containerenv: bool,
    /// `/proc/1/cgroup`.
    pub pid1_cgroup: Option<String>,
    /// `/proc/sys/kernel/osrelease` (WSL's kernels name Microsoft).
    pub kernel_release: Option<String>,
    /// `/sys/class/dmi/id/sys_vendor`.
    pub dmi_sys_vendor: Option<String>,
    /// `/sys/class/dmi/id/product_name`.
    pub dmi_product_name: Option<String>,
    /// `/proc/xen` exists, and `/proc/xen/capabilities` if it reads.
    pub xen: Option<String>,
    /// `/dev/vmbus/hv_kvp` or `/dev/vmbus/hv_vss` exists (Hyper-V's guest services).
    pub hyperv_vmbus: bool,
    /// The `hypervisor` flag of `/proc/cpuinfo`: some hypervisor, maybe unnamed.
    pub cpu_hypervisor_flag: bool,
}

pub const GUEST: &str = "guest";
pub const HOST: &str = "host";

/// (system, role); both empty when nothing points to a hypervisor or a container.
/// Containers are named before virtual machines: a container in a VM reports the container.
pub fn detect(signs: &Signs) -> (String, String) {
    let found = container(signs).or_else(|| virtual_machine(signs));
    match found {
        Some((system, role)) => (system.to_owned(), role.to_owned()),
        None => (String::new(), String::new()),
    }
}

fn container(signs: &Signs) -> Option<(&'static str, &'static str)> {
    if let Some(manager) = signs.systemd_container.as_deref().map(str::trim) {
        let system = match manager {
            "docker" => "DOCKER",
            "podman" => "PODMAN",
            "lxc" | "lxc-libvirt" => "LXC",
            "systemd-nspawn" => "SYSTEMD-NSPAWN",
            "rkt" => "RKT",
            "wsl" => "WSL",
            "proot" => "PROOT",
            "pouch" => "POUCH",
            "" => "",
            _ => "CONTAINER-OTHER",
        };
        if !system.is_empty() {
            return Some((system, GUEST));
        }
    }
    if signs.kernel_release.as_deref().is_some_and(|release| {
        let release = release.to_ascii_lowercase();
        release.contains("microsoft") || release.contains("wsl")
    }) {
        return Some(("WSL", GUEST));
    }
    if signs.containerenv {
        return Some(("PODMAN", GUEST));
    }
    if signs.dockerenv {
        return Some(("DOCKER", GUEST));
    }
    let cgroup = signs.pid1_cgroup.as_deref().unwrap_or_default();
    if cgroup.contains("/docker") {
        return Some(("DOCKER", GUEST));
    }
    if cgroup.contains("/lxc") {
        return Some(("LXC", GUEST));
    }
    None
}

fn virtual_machine(signs: &Signs) -> Option<(&'static str, &'static str)> {
    let vendor = signs.dmi_sys_vendor.as_deref().unwrap_or_default().trim();
    let product = signs.dmi_product_name.as_deref().unwrap_or_default().trim();
    let named = |text: &str| -> Option<&'static str> {
        let text = text.to_ascii_lowercase();
        [
            ("kvm", "KVM"),
            ("qemu", "KVM"),
            ("vmware", "VMWARE"),
            ("innotek", "VIRTUALBOX"),
            ("virtualbox", "VIRTUALBOX"),
            ("xen", "XEN"),
            ("bochs", "BOCHS"),
            ("parallels", "PARALLELS"),
            ("bhyve", "BHYVE"),
            ("amazon ec2", "AMAZON"),
            ("google compute engine", "GOOGLE"),
            ("openstack", "OPENSTACK"),
        ]
        .into_iter()
        .find(|(needle, _)| text.contains(needle))
        .map(|(_, system)| system)
    };
    // The product names KVM on QEMU machines with KVM; the vendor says QEMU.
    if let Some(system) = named(product).or_else(|| named(vendor)) {
        return Some((system, GUEST));
    }
    if vendor.eq_ignore_ascii_case("Microsoft Corporation") && product.contains("Virtual Machine") {
        return Some(("HYPERV", GUEST));
    }
    if signs.hyperv_vmbus {
        return Some(("HYPERV", GUEST));
    }
    if let Some(capabilities) = &signs.xen {
        // dom0 controls the other domains: it is the host.
        let role = if capabilities.contains("control_d") {
            HOST
        } else {
            GUEST
        };
        return Some(("XEN", role));
    }
    signs.cpu_hypervisor_flag.then_some(("UNKNOWN", GUEST))
}

/// Reads the signs of this system; anything that does not read counts as absent.
pub fn observe(cpuinfo: &str) -> Signs {
    let read = |path: &str| std::fs::read_to_string(path).ok();
    let exists = |path: &str| std::path::Path::new(path).exists();
    Signs {
        systemd_container: read("/run/systemd/container"),
        dockerenv: exists("/.dockerenv"),
        containerenv: exists("/run/.containerenv"),
        pid1_cgroup: read("/proc/1/cgroup"),
        kernel_release: read("/proc/sys/kernel/osrelease"),
        dmi_sys_vendor: read("/sys/class/dmi/id/sys_vendor"),
        dmi_product_name: read("/sys/class/dmi/id/product_name"),
        xen: exists("/proc/xen").then(|| read("/proc/xen/capabilities").unwrap_or_default()),
        hyperv_vmbus: exists("/dev/vmbus/hv_kvp") || exists("/dev/vmbus/hv_vss"),
        cpu_hypervisor_flag: has_hypervisor_flag(cpuinfo),
    }
}

/// Whether the first `flags` line of `/proc/cpuinfo` has `hypervisor`.
pub fn has_hypervisor_flag(cpuinfo: &str) -> bool {
    cpuinfo
        .lines()
        .filter_map(|line| line.split_once(':'))
        .find(|(key, _)| key.trim() == "flags")
        .is_some_and(|(_, flags)| flags.split_whitespace().any(|flag| flag == "hypervisor"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn detected(signs: Signs) -> (String, String) {
        detect(&signs)
    }

    fn pair(system: &str, role: &str) -> (String, String) {
        (system.to_owned(), role.to_owned())
    }

    #[test]
    fn bare_metal_names_nothing() {
        let signs = Signs {
            pid1_cgroup: Some("0::/init.scope\n".into()),
            kernel_release: Some("6.1.0-18-amd64\n".into()),
            dmi_sys_vendor: Some("Dell Inc.\n".into()),
            dmi_product_name: Some("PowerEdge R640\n".into()),
            ..Default::default()
        };
        assert_eq!(detected(signs), pair("", ""));
    }

    #[test]
    fn virtual_machines_from_dmi() {
        let kvm = Signs {
            dmi_sys_vendor: Some("QEMU\n".into()),
            dmi_product_name: Some("Standard PC (Q35 + ICH9, 2009)\n".into()),
            cpu_hypervisor_flag: true,
            ..Default::default()
        };
        assert_eq!(detected(kvm), pair("KVM", "guest"));
        let vmware = Signs {
            dmi_sys_vendor: Some("VMware, Inc.\n".into()),
            dmi_product_name: Some("VMware Virtual Platform\n".into()),
            ..Default::default()
        };
        assert_eq!(detected(vmware), pair("VMWARE", "guest"));
        let hyperv = Signs {
            dmi_sys_vendor: Some("Microsoft Corporation\n".into()),
            dmi_product_name: Some("Virtual Machine\n".into()),
            ..Default::default()
        };
        assert_eq!(detected(hyperv), pair("HYPERV", "guest"));
        let vbox = Signs {
            dmi_sys_vendor: Some("innotek GmbH\n".into()),
            dmi_product_name: Some("VirtualBox\n".into()),
            ..Default::default()
        };
        assert_eq!(detected(vbox), pair("VIRTUALBOX", "guest"));
        let ec2 = Signs {
            dmi_sys_vendor: Some("Amazon EC2\n".into()),
            dmi_product_name: Some("t3.micro\n".into()),
            ..Default::default()
        };
        assert_eq!(detected(ec2), pair("AMAZON", "guest"));
    }

    #[test]
    fn xen_dom0_is_the_host() {
        let dom0 = Signs {
            xen: Some("control_d\n".into()),
            ..Default::default()
        };
        assert_eq!(detected(dom0), pair("XEN", "host"));
        let domu = Signs {
            xen: Some(String::new()),
            ..Default::default()
        };
        assert_eq!(detected(domu), pair("XEN", "guest"));
    }

    #[test]
    fn containers_come_before_the_vm_they_run_in() {
        let docker_in_kvm = Signs {
            dockerenv: true,
            pid1_cgroup: Some("0::/\n".into()),
            dmi_sys_vendor: Some("QEMU\n".into()),
            cpu_hypervisor_flag: true,
            ..Default::default()
        };
        assert_eq!(detected(docker_in_kvm), pair("DOCKER", "guest"));
        let nspawn = Signs {
            systemd_container: Some("systemd-nspawn\n".into()),
            ..Default::default()
        };
        assert_eq!(detected(nspawn), pair("SYSTEMD-NSPAWN", "guest"));
        let lxc_v1 = Signs {
            pid1_cgroup: Some("12:pids:/lxc/web1\n0::/lxc/web1\n".into()),
            ..Default::default()
        };
        assert_eq!(detected(lxc_v1), pair("LXC", "guest"));
        let docker_v1 = Signs {
            pid1_cgroup: Some("9:memory:/docker/3f1c0a\n".into()),
            ..Default::default()
        };
        assert_eq!(detected(docker_v1), pair("DOCKER", "guest"));
        let podman = Signs {
            containerenv: true,
            ..Default::default()
        };
        assert_eq!(detected(podman), pair("PODMAN", "guest"));
        let wsl = Signs {
            kernel_release: Some("5.15.153.1-microsoft-standard-WSL2\n".into()),
            ..Default::default()
        };
        assert_eq!(detected(wsl), pair("WSL", "guest"));
    }

    #[test]
    fn an_unnamed_hypervisor_is_still_a_guest() {
        let cpuinfo =
            "processor\t: 0\nvendor_id\t: AuthenticAMD\nflags\t\t: fpu vme hypervisor lahf_lm\n";
        assert!(has_hypervisor_flag(cpuinfo));
        assert!(!has_hypervisor_flag("flags\t\t: fpu vme lahf_lm\n"));
        let signs = Signs {
            cpu_hypervisor_flag: true,
            ..Default::default()
        };
        assert_eq!(detected(signs), pair("UNKNOWN", "guest"));
    }
}
