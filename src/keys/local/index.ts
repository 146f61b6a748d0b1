export { createLocalKeyManager, type LocalKeyManagerOptions } from './local-key-manager.js';
export { LocalKeyError } from './key-files.js';
export { createNodeSigningKey, publicMembers } from './node-signing-key.js';
