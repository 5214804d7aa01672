// Validate an AsyncAPI document with the official parser (@asyncapi/parser, pinned in
// package.json/package-lock.json beside this file; scripts/tools.sh installs it into
// .tools/asyncapi). Prints every diagnostic; exits 1 on any error or warning.
//   node scripts/asyncapi/validate.cjs .tools/asyncapi docs/asyncapi.yaml
const path = require("node:path");
const { createRequire } = require("node:module");

async function main() {
  const [tools, file] = process.argv.slice(2);
  if (!tools || !file) {
    console.error("usage: validate.cjs TOOLS_DIR DOCUMENT");
    return 2;
  }
  const load = createRequire(path.resolve(tools, "package.json"));
  const { Parser, fromFile } = load("@asyncapi/parser");
  const diagnostics = await fromFile(new Parser(), path.resolve(file)).validate();
  const names = ["error", "warning", "info", "hint"];
  let bad = 0;
  for (const d of diagnostics) {
    console.log(`${names[d.severity]} ${d.code} ${d.path.join("/")}: ${d.message}`);
    if (d.severity <= 1) bad += 1;
  }
  console.log(`${file}: ${bad ? bad + " error(s) or warning(s)" : "valid AsyncAPI"}`);
  return bad ? 1 : 0;
}

main().then((code) => process.exit(code), (err) => { console.error(err); process.exit(2); });
