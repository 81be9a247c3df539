import { Sandbox } from 'e2b';
const sb = await Sandbox.connect(process.argv[2], { apiUrl: 'http://127.0.0.1:3915', sandboxUrl: 'http://127.0.0.1:3915', apiKey: process.env.KEY });
if (process.argv[3]) { await sb.commands.run(process.argv[3], { background: true, timeoutMs: 0 }); await new Promise(r => setTimeout(r, 1500)); }
console.log((await sb.commands.run('ps aux')).stdout);
