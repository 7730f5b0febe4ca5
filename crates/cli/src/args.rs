//! A small command-line parser: `burrow COMMAND [--flag value | --switch]...`.

use std::collections::HashMap;

pub struct Args {
    pub command: String,
    values: HashMap<String, Vec<String>>,
    switches: Vec<String>,
}

/// Flags that take no value.
const SWITCHES: &[&str] = &["json", "chat", "ignore-eos", "decode", "bandwidth", "help"];

impl Args {
    pub fn parse(mut argv: impl Iterator<Item = String>) -> Result<Args, String> {
        let command = argv.next().ok_or_else(usage)?;
        let mut values: HashMap<String, Vec<String>> = HashMap::new();
        let mut switches = Vec::new();
        while let Some(arg) = argv.next() {
            let Some(name) = arg.strip_prefix("--") else {
                return Err(format!("unexpected argument '{arg}'\n{}", usage()));
            };
            let (name, inline) = match name.split_once('=') {
                Some((n, v)) => (n.to_string(), Some(v.to_string())),
                None => (name.to_string(), None),
            };
            if SWITCHES.contains(&name.as_str()) {
                switches.push(name);
                continue;
            }
            let value = match inline {
                Some(v) => v,
                None => argv.next().ok_or_else(|| format!("--{name} needs a value"))?,
            };
            values.entry(name).or_default().push(value);
        }
        Ok(Args { command, values, switches })
    }

    pub fn switch(&self, name: &str) -> bool {
        self.switches.iter().any(|s| s == name)
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.values.get(name).and_then(|v| v.last()).map(String::as_str)
    }

    pub fn all(&self, name: &str) -> Vec<String> {
        self.values.get(name).cloned().unwrap_or_default()
    }

    pub fn require(&self, name: &str) -> Result<&str, String> {
        self.get(name).ok_or_else(|| format!("--{name} is required"))
    }

    pub fn number<T: std::str::FromStr>(&self, name: &str, default: T) -> Result<T, String> {
        match self.get(name) {
            None => Ok(default),
            Some(v) => v.parse().map_err(|_| format!("--{name}: '{v}' is not a valid number")),
        }
    }

    /// Flags given but not understood by the command: a typo should not pass silently.
    pub fn reject_unknown(&self, known: &[&str]) -> Result<(), String> {
        let unknown = self
            .values
            .keys()
            .chain(self.switches.iter())
            .find(|k| !known.contains(&k.as_str()));
        match unknown {
            Some(k) => Err(format!("unknown option --{k} for '{}'", self.command)),
            None => Ok(()),
        }
    }
}

pub fn usage() -> String {
    "usage: burrow COMMAND [options]
commands:
  info      --model FILE
  tokenize  --model FILE --text TEXT [--json]
  logits    --model FILE (--prompt TEXT | --ids 1,2,3) [--context N] [--decode] [--backend cpu|wgpu] [--kernels K] [--json]
  generate  --model FILE (--prompt TEXT | --ids 1,2,3) [--max-tokens N] [--temperature T] [--top-k K] [--top-p P]
            [--min-p P] [--repeat-penalty R] [--seed S] [--stop STRING]... [--chat] [--ignore-eos]
            [--backend cpu|wgpu] [--kernels K] [--json]
  chat      --model FILE [--temperature T] [--max-tokens N] [--backend cpu|wgpu] [--kernels K]
  bench     --model FILE [--backend cpu|wgpu] [--kernels K] [--prompt-tokens N] [--gen-tokens N] [--temperature T ...]
            [--bandwidth] [--json]
  shaders   [--json]   every GPU kernel variant (its WGSL with --json)
K (wgpu only): auto (the default: the CPU-adapter family on lavapipe, llvmpipe and SwiftShader, the GPU family
elsewhere), gpu or cpu-adapter"
        .to_string()
}
