// Run a MicroPython script under the WebAssembly port (32-bit objects, like an ESP32's), with
// a board build's files on its path. Used by tools/bench.py for the 32-bit heap figures.
//
//   node tools/heap32.mjs PACKAGE_DIR BUILD_DIR SCRIPT [ARG ...]
//
// PACKAGE_DIR: the installed @micropython/micropython-webassembly-pyscript package.
// BUILD_DIR: a board tree (tools/build.py): its files are copied to /lib in the VM's own
// in-memory file system, which is on the VM's sys.path. SCRIPT runs as __main__ with
// sys.argv = [SCRIPT, ARG ...]; its output goes to stdout. Exit status 1 if it raises.
import fs from "node:fs";
import path from "node:path";
import { pathToFileURL } from "node:url";

const [pkgDir, buildDir, script, ...args] = process.argv.slice(2);
if (!script) {
  process.stderr.write("usage: node heap32.mjs PACKAGE_DIR BUILD_DIR SCRIPT [ARG ...]\n");
  process.exit(2);
}
const { loadMicroPython } = await import(pathToFileURL(path.join(pkgDir, "micropython.mjs")).href);
const mp = await loadMicroPython({ stdout: (line) => process.stdout.write(line + "\n"),
                                   stderr: (line) => process.stderr.write(line + "\n") });

function copyTree(src, dest) {
  try { mp.FS.mkdir(dest); } catch (e) { /* exists */ }
  for (const entry of fs.readdirSync(src, { withFileTypes: true })) {
    const from = path.join(src, entry.name);
    const to = dest + "/" + entry.name;
    if (entry.isDirectory()) copyTree(from, to);
    else mp.FS.writeFile(to, fs.readFileSync(from));
  }
}
copyTree(buildDir, "/lib");

try {
  mp.runPython("import sys\nsys.argv[:] = " + JSON.stringify([script, ...args]) + "\ndel sys\n");
  mp.runPython(fs.readFileSync(script, "utf8"));
  // This port collects only when control is back at the top level: a gc.collect() inside a
  // script only asks for one. A script that defines _STEP() is driven from here, one call per
  // phase, so that every phase starts on a collected heap; _STEP() returns False when done.
  if (mp.globals.get("_STEP") !== undefined) {
    for (;;) {
      mp.runPython("_MORE = _STEP()");
      if (!mp.globals.get("_MORE")) break;
    }
  }
} catch (e) {
  process.stderr.write(String(e.message || e) + "\n");
  process.exit(1);
}
