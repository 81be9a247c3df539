import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  // Template files are the image's, not Node's: a Firefox prefs file is not JavaScript that runs here.
  { ignores: ['dist/', 'node_modules/', 'docs/', '.scratch/', 'native/', 'src/images/templates/desktop/'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: { globals: { process: 'readonly', console: 'readonly', Buffer: 'readonly', setTimeout: 'readonly', clearTimeout: 'readonly', setInterval: 'readonly', clearInterval: 'readonly', URL: 'readonly' } },
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
    },
  },
  {
    // A folder is a room: other rooms are reached through their index.ts only.
    files: ['src/**/*.ts'],
    rules: {
      'no-restricted-imports': ['error', { patterns: [{ regex: '^(\\.\\./)+[^.].*/(?!index\\.ts$)[^/]+$', message: 'Import another room through its index.ts.' }] }],
    },
  },
);
