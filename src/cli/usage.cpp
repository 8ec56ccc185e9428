#include "cli/usage.h"

#include <cstdio>

#include "config/schema.h"

namespace speedrun::cli {

namespace {

// The innermost subcommand being parsed (the app itself when none was named).
const CLI::App* command_being_parsed(const CLI::App& app) {
  const CLI::App* target = &app;
  for (auto subs = app.get_subcommands(); !subs.empty(); subs = target->get_subcommands()) target = subs.front();
  return target;
}

std::string full_name(const CLI::App& app, const CLI::App& command) {
  return &command == &app ? app.get_name() : app.get_name() + " " + command.get_name();
}

// The option names `command` takes: its own, and the app's that fall through (-v, -q).
std::vector<std::string> option_names(const CLI::App& app, const CLI::App& command) {
  std::vector<std::string> names;
  for (const CLI::App* a : {&command, &app}) {
    for (const CLI::Option* opt : a->get_options()) {
      for (const std::string& l : opt->get_lnames()) names.push_back("--" + l);
      for (const std::string& s : opt->get_snames()) names.push_back("-" + s);
    }
    if (a == &app) break;
  }
  return names;
}

// The positionals `command` takes, as its usage line names them ("config", "files").
std::string positional_phrase(const CLI::App& command) {
  std::string names;
  int count = 0;
  for (const CLI::Option* opt : command.get_options())
    if (opt->get_positional()) {
      names += (names.empty() ? "" : ", ") + opt->get_name();
      ++count;
    }
  if (count == 0) return "takes no positional argument";
  return std::string("takes ") + (count == 1 ? "" : "the positionals ") + names;
}

}  // namespace

std::string describe_extras(const CLI::App& app, const CLI::App& command, const std::vector<std::string>& extras) {
  std::string out;
  bool named_a_command = false;
  for (size_t i = 0; i < extras.size(); ++i) {
    const std::string& arg = extras[i];
    auto is_option = [](const std::string& a) { return a.size() > 1 && a[0] == '-'; };
    std::string phrase;
    if (is_option(arg)) {
      const std::string name = arg.substr(0, arg.find('='));
      phrase = "unknown argument " + arg;
      // The word after an unknown option is most likely its value, not a stray argument.
      if (arg.find('=') == std::string::npos && i + 1 < extras.size() && !is_option(extras[i + 1]))
        phrase += " " + extras[++i];
      const std::string near = config::closest_key(name, option_names(app, command));
      if (!near.empty() && near != name) phrase += " (did you mean " + near + "?)";
      else phrase += " (" + full_name(app, command) + " has no such option)";
    } else if (&command == &app) {
      if (named_a_command) continue;  // the arguments of the unknown command
      named_a_command = true;
      std::vector<std::string> commands;
      for (const CLI::App* sub : app.get_subcommands({})) commands.push_back(sub->get_name());
      phrase = "unknown command " + arg;
      const std::string near = config::closest_key(arg, commands);
      if (!near.empty()) phrase += " (did you mean " + near + "?)";
    } else {
      phrase = "unexpected argument " + arg + " (" + full_name(app, command) + " " + positional_phrase(command) + ")";
    }
    out += (out.empty() ? "" : "; ") + phrase;
  }
  return out;
}

int usage_error(CLI::App& app, const CLI::ParseError& e) {
  const CLI::App* command = command_being_parsed(app);
  // CLI11 reports a missing subcommand or positional before unrecognised arguments (so
  // `speedrun bench --bogus` would only say "config is required"), and lists the
  // unrecognised ones in reverse order without a suggestion: describe them ourselves, in
  // command-line order, first.
  std::string message = e.what();
  const std::vector<std::string> extras = app.remaining(/*recurse=*/true);
  if (!extras.empty()) {
    const std::string described = describe_extras(app, *command, extras);
    message = dynamic_cast<const CLI::ExtrasError*>(&e) ? described : described + " (and " + message + ")";
  }
  // help() from the app names the full command: "Usage: speedrun bench [OPTIONS] config".
  std::fprintf(stderr, "error: %s\n\n%s", message.c_str(), app.help().c_str());
  return 2;
}

}  // namespace speedrun::cli
